//! The mirror and the relay log as C2SP tlog-tiles (`/log/…`, `/state/…`), and the relay log as
//! a device-state bundle for the air-gapped signer (`GET /api/v1/state-bundle`).

use std::path::Path;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth::Operator;
use super::status::refuse;
use crate::config::PublicRoute;
use crate::relay::Relay;
use crate::statelog;
use crate::witness::StateBundleError;

#[derive(Debug, Deserialize)]
pub(super) struct FromQuery {
    #[serde(default)]
    from: u64,
    /// With `[witnesses] relay_log`: `false` asks for the log up to its latest checkpoint, with or
    /// without a quorum (by default the bundle ends at the latest with one).
    #[serde(default = "witnessed_by_default")]
    witnessed: bool,
}

fn witnessed_by_default() -> bool {
    true
}

/// `GET /api/v1/state-bundle?from=N[&witnessed=false]`: the relay's log from entry `N` as a
/// transfer bundle (formats.md §6), for the air-gapped signer's mirror (`cairn bundle import`);
/// with `[witnesses] relay_log`, up to its latest checkpoint with a quorum (503 while there is
/// none beyond `N`, naming the witnesses missing).
pub(super) async fn state_bundle(
    _operator: Operator,
    relay: web::Data<Relay>,
    query: web::Query<FromQuery>,
) -> HttpResponse {
    let (from, witnessed) = (query.from, query.witnessed);
    let result = web::block(move || {
        relay
            .state_bundle(from, witnessed)
            .map(|b| b.to_cbor())
            .inspect(|_| crate::interrupted::reached("state-bundle"))
    })
    .await;
    match result {
        Ok(Ok(bytes)) => HttpResponse::Ok()
            .content_type("application/cbor")
            .insert_header((
                "Content-Disposition",
                "attachment; filename=\"relay-state.bundle\"",
            ))
            .body(bytes),
        Ok(Err(e @ StateBundleError::NotWitnessed { .. })) => {
            let mut refused = refuse(StatusCode::SERVICE_UNAVAILABLE, e);
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str("10") {
                refused
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, v);
            }
            refused
        }
        // A `from` the log has no checkpoint for is the caller's; anything else is storage.
        Ok(Err(StateBundleError::Log(
            e
            @ (cairn_vault::Error::SizeBeyondLog { .. } | cairn_vault::Error::NoCheckpoint { .. }),
        ))) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Whether `path` is a tlog-tiles name: segments of `[A-Za-z0-9.]`, never `.` or `..`.
fn tile_name(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        })
}

fn serve_tile(dir: &Path, path: &str) -> HttpResponse {
    if !tile_name(path) {
        return HttpResponse::NotFound().finish();
    }
    match std::fs::read(dir.join(path)) {
        Ok(bytes) => {
            let (content_type, cache) = if path == "checkpoint" {
                ("text/plain; charset=utf-8", "no-cache")
            } else if path.contains(".p/") {
                ("application/octet-stream", "no-cache")
            } else {
                // C2SP tlog-tiles: full tiles never change.
                (
                    "application/octet-stream",
                    "public, max-age=31536000, immutable",
                )
            };
            HttpResponse::Ok()
                .content_type(content_type)
                .insert_header(("Cache-Control", cache))
                .body(bytes)
        }
        Err(_) => HttpResponse::NotFound().finish(),
    }
}

/// `GET /log/<path>`: the mirror as static C2SP tlog-tiles (`checkpoint`, `tile/…`).
pub(super) async fn tiles(relay: web::Data<Relay>, path: web::Path<String>) -> HttpResponse {
    serve_tile(&relay.tiles, &path)
}

/// `GET /state/<path>`: the relay's own device-state log as C2SP tlog-tiles, brought up to date
/// when its checkpoint is asked for; `GET /state/key.pem` is the relay key that signs it.
pub(super) async fn state_tiles(
    relay: web::Data<Relay>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let path = path.into_inner();
    // The relay key is public (auditors check the state bundles with it); the log's tiles carry
    // every device's state: a token or a session, unless `[http] public` opens them.
    if path != "key.pem"
        && let Err(refused) = super::auth::may_read(&relay, &req, PublicRoute::State)
    {
        return *refused;
    }
    if path == "key.pem" {
        return match std::fs::read(relay.data_dir.join(statelog::PUBLIC_KEY_FILE)) {
            Ok(pem) => HttpResponse::Ok()
                .content_type("application/x-pem-file")
                .body(pem),
            Err(_) => HttpResponse::NotFound().finish(),
        };
    }
    if path == "checkpoint" {
        let relay2 = relay.clone();
        let exported = web::block(move || {
            let engine = relay2.engine();
            engine
                .log()
                .vault()
                .export(&relay2.state_tiles, &mut |_, _| {})
                .map(|_| ())
        })
        .await;
        if !matches!(exported, Ok(Ok(()))) {
            return HttpResponse::ServiceUnavailable().finish();
        }
    }
    serve_tile(&relay.state_tiles, &path)
}
