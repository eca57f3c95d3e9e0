//! The relay's HTTP API (docs/relay.md, "HTTP API"): the operator API under `/api/v1` (bearer
//! tokens, checked on the request head before any body is read), the mirror and the relay log as
//! tlog-tiles, the dashboard and the operator console (`console.rs`), the metrics. Each error's
//! status is decided in one place (`status.rs`): the caller's fault is a 4xx, the relay's own
//! failure (I/O, storage) a 500, never a 409.

mod auth;
mod bundles;
mod campaigns;
mod console;
mod status;
mod tiles;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::PublicRoute;
use crate::relay::Relay;

pub use auth::Operator;
pub use status::engine_status;

/// `GET /metrics`: Prometheus text format (a token or a session, unless `[http] public` opens it).
async fn metrics(relay: web::Data<Relay>, req: HttpRequest) -> HttpResponse {
    if let Err(refused) = auth::may_read(&relay, &req, PublicRoute::Metrics) {
        return *refused;
    }
    let mut body = relay.metrics.render(relay.vault.size(), &relay.engine());
    for w in relay
        .witness_view()
        .into_iter()
        .chain(relay.relay_log_witness_view())
    {
        body.push_str(&crate::metrics::witnesses(&w));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// The relay's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // The bundle's body is read by the handler, after the token, under `[http] max_bundle_bytes`.
    cfg.route("/api/v1/bundles", web::post().to(bundles::import))
        .route("/api/v1/status", web::get().to(bundles::status))
        .route("/api/v1/witnesses", web::get().to(bundles::witnesses))
        .route("/api/v1/campaigns", web::get().to(campaigns::list))
        .route(
            "/api/v1/campaigns/{campaign}",
            web::get().to(campaigns::one),
        )
        .route(
            "/api/v1/campaigns/{campaign}/devices",
            web::get().to(campaigns::devices),
        )
        .route(
            "/api/v1/campaigns/{campaign}/{action}",
            web::post().to(campaigns::action),
        )
        .route("/api/v1/state-bundle", web::get().to(tiles::state_bundle))
        .route("/state/{path:.*}", web::get().to(tiles::state_tiles))
        .configure(console::routes)
        .route(
            "/",
            web::get().to(|| async {
                HttpResponse::Found()
                    .insert_header(("Location", "/dashboard"))
                    .finish()
            }),
        )
        .route("/log/{path:.*}", web::get().to(tiles::tiles))
        .route("/metrics", web::get().to(metrics))
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
        );
}
