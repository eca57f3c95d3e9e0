//! The HTTP interface (C2SP tlog-witness "HTTP Interface"): `POST /add-checkpoint`.
//!
//! Status codes: 200 with the cosignature line(s); 400 malformed body; 403 not signed by the log's
//! key; 404 unknown log; 409 with `text/x.tlog.size` body `<size>\n` when the old size is not the
//! witness's (and for a fork of equal size); 422 when the consistency proof fails; 500 when the
//! state cannot be read or written. Cosignatures are self-authenticating, so the protocol needs no
//! client authentication; put a TLS terminator or an https-bastion in front on a network.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::witness::{AddError, Witness, now};

/// Largest request body accepted: a checkpoint note (8 KiB) and 63 proof lines, with room.
pub const MAX_BODY: usize = 16 * 1024;

/// Registers the witness's routes on an actix-web service config.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("/add-checkpoint", web::post().to(add_checkpoint));
}

async fn add_checkpoint(witness: web::Data<Witness>, body: web::Bytes) -> HttpResponse {
    let witness: Arc<Witness> = witness.into_inner();
    // The check and the fsync block: off the async workers.
    let result = web::block(move || witness.add_checkpoint(&body, now())).await;
    match result {
        Ok(Ok(cosigned)) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(cosigned.lines),
        Ok(Err(e)) => error_response(&e),
        Err(_) => HttpResponse::InternalServerError().body("witness worker failed\n"),
    }
}

fn error_response(e: &AddError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(e.status())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    match e {
        AddError::Conflict { size, .. } | AddError::Fork { size, .. } => {
            HttpResponse::build(status)
                .content_type("text/x.tlog.size")
                .body(format!("{size}\n"))
        }
        AddError::Storage(_) => {
            eprintln!("cairn-witness: {e}");
            HttpResponse::build(status).body("witness storage failure\n")
        }
        _ => HttpResponse::build(status).body(format!("{e}\n")),
    }
}
