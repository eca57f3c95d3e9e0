//! `POST /api/v1/bundles` (import a transfer bundle), `GET /api/v1/status` and
//! `GET /api/v1/witnesses`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::auth::Operator;
use super::status::{engine_status, refuse};
use crate::metrics::Metrics;
use crate::relay::{ImportError, Relay};
use crate::witness::WitnessView;

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

/// `413`, naming the limit and the key that sets it.
fn too_large(limit: u64) -> HttpResponse {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the bundle is larger than {limit} bytes ([http] max_bundle_bytes)"),
    )
}

/// `POST /api/v1/bundles`: verify and import a transfer bundle, then publish the new tiles.
///
/// The `Operator` extractor runs first, on the request head: without a valid token the body is
/// never read (actix-web then closes the connection instead of reading on). With one, a declared
/// `Content-Length` above `[http] max_bundle_bytes` is refused at once, and the body is streamed
/// and refused as soon as it passes the limit, so an import costs at most the limit in memory.
pub(super) async fn import(
    _operator: Operator,
    relay: web::Data<Relay>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let limit = relay.http.max_bundle_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        Metrics::count(&relay.metrics.bundles_refused);
        return too_large(limit);
    }
    let body = match payload
        .to_bytes_limited(usize::try_from(limit).unwrap_or(usize::MAX))
        .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return refuse(StatusCode::BAD_REQUEST, e),
        Err(_) => {
            Metrics::count(&relay.metrics.bundles_refused);
            return too_large(limit);
        }
    };
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

/// `GET /api/v1/witnesses`: the witnesses against the policy (404 without `[witnesses]`), and
/// with `relay_log`, of the relay's own log under `relay_log`. The cosigned checkpoint itself is
/// `/log/checkpoint`, which `cairn witness attach` takes.
pub(super) async fn witnesses(_operator: Operator, relay: web::Data<Relay>) -> HttpResponse {
    let Some((w, relay_log)) = web::block(move || {
        relay
            .witness_view()
            .map(|w| (w, relay.relay_log_witness_view()))
    })
    .await
    .ok()
    .flatten() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no [witnesses] in the relay's configuration",
        );
    };
    let mut body = view_json(&w);
    body["ok"] = json!(true);
    body["relay_log"] = relay_log
        .as_ref()
        .map_or(serde_json::Value::Null, view_json);
    HttpResponse::Ok().json(body)
}

/// One log's witnesses as JSON.
fn view_json(w: &WitnessView) -> serde_json::Value {
    let witnesses: Vec<_> = w
        .witnesses
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "url": s.url,
                "cosigned": s.cosigned,
                "claimed": s.claimed,
                "last_error": s.last_error,
                "last_attempt": s.last_attempt,
                "last_cosigned_at": s.last_cosigned_at,
                "failures": s.failures,
            })
        })
        .collect();
    json!({
        "threshold": w.threshold,
        "latest": w.latest,
        "witnessed": w.witnessed,
        "waiting": w.waiting(),
        "summary": w.summary(),
        "witnesses": witnesses,
    })
}
