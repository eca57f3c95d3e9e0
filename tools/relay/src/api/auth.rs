//! Operator authentication: `Authorization: Bearer <token>`, checked on the request head. As the
//! first extractor of a handler it runs before the body is read (actix-web extracts in order and
//! stops at the first refusal), so an unauthenticated upload is refused without being received.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::error::InternalError;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::metrics::Metrics;
use crate::relay::Relay;

/// An authenticated operator: their configured name.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

fn unauthorized() -> actix_web::Error {
    let response = HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", "Bearer"))
        .json(json!({ "ok": false, "error": "an operator bearer token is required" }));
    InternalError::from_response("unauthorized", response).into()
}

impl FromRequest for Operator {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(relay) = req.app_data::<web::Data<Relay>>() else {
            return ready(Err(unauthorized()));
        };
        let operator = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| relay.operator_of(token));
        ready(operator.map(Operator).ok_or_else(|| {
            Metrics::count(&relay.metrics.unauthorized);
            unauthorized()
        }))
    }
}
