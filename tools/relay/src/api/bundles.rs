//! `POST /api/v1/bundles` (import a transfer bundle) and `GET /api/v1/status`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::auth::Operator;
use super::status::{engine_status, refuse};
use crate::relay::{ImportError, Relay};

/// The status an import error answers with.
fn import_status(e: &ImportError) -> StatusCode {
    match e {
        ImportError::NotABundle(_) | ImportError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ImportError::Fork { .. } => StatusCode::CONFLICT,
        ImportError::Engine(e) if engine_status(e) != StatusCode::INTERNAL_SERVER_ERROR => {
            engine_status(e)
        }
        ImportError::Mirror(_)
        | ImportError::Origin(_)
        | ImportError::Engine(_)
        | ImportError::Tiles(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /api/v1/bundles`: verify and import a transfer bundle, then publish the new tiles.
pub(super) async fn import(
    _operator: Operator,
    relay: web::Data<Relay>,
    body: web::Bytes,
) -> HttpResponse {
    match web::block(move || relay.import_bundle_bytes(&body)).await {
        Ok(Ok(report)) => HttpResponse::Ok().json(report),
        Ok(Err(e)) => refuse(import_status(&e), e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `GET /api/v1/status`.
pub(super) async fn status(_operator: Operator, relay: web::Data<Relay>) -> HttpResponse {
    let checkpoint = relay.vault().latest_checkpoint().ok().flatten();
    HttpResponse::Ok().json(json!({
        "ok": true,
        "origin": relay.origin(),
        "size": relay.vault().size(),
        "checkpoint": checkpoint,
    }))
}
