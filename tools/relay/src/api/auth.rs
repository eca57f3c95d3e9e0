//! Operator authentication: `Authorization: Bearer <token>`, checked on the request head. As the
//! first extractor of a handler it runs before the body is read (actix-web extracts in order and
//! stops at the first refusal), so an unauthenticated upload is refused without being received.
//! A source whose authentications failed `[http] max_auth_failures` times within a minute gets
//! `429` instead, its token unchecked (`throttle.rs`). `may_read` guards the routes readable with
//! a token or a session unless `[http] public` opens them.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::error::InternalError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::config::PublicRoute;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::session::Session;

/// The session cookie.
pub(super) const SESSION: &str = "cairn_session";

/// The value of cookie `name`, if the request carries it.
pub(super) fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The signed-in session of the request, if any: its id and what it holds.
pub(super) fn session(relay: &Relay, req: &HttpRequest) -> Option<(String, Session)> {
    let id = cookie(req, SESSION)?;
    let session = relay.sessions.get(&id)?;
    Some((id, session))
}

/// The source a request counts against for failed authentications.
pub(super) fn source(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// Whether the request's source has used up its failed authentications for now.
pub(super) fn throttled(relay: &Relay, req: &HttpRequest) -> bool {
    source(req).is_some_and(|ip| relay.throttle.blocked(ip))
}

/// Counts a failed authentication against the request's source.
pub(super) fn failed(relay: &Relay, req: &HttpRequest) {
    Metrics::count(&relay.metrics.unauthorized);
    if let Some(ip) = source(req) {
        relay.throttle.failed(ip);
    }
}

/// `429`: too many failed authentications from this source.
pub(super) fn too_many() -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", crate::throttle::WINDOW.as_secs().to_string()))
        .json(json!({
            "ok": false,
            "error": "too many failed authentications from this address: try again in a minute"
        }))
}

/// Whether the request may read `route`: `[http] public` opens it, or a signed-in session, or a
/// valid bearer token. Otherwise the response to send (`401`, or `429` for a throttled source).
pub(super) fn may_read(
    relay: &Relay,
    req: &HttpRequest,
    route: PublicRoute,
) -> Result<(), Box<HttpResponse>> {
    if relay.http.public.contains(&route) || session(relay, req).is_some() {
        return Ok(());
    }
    if throttled(relay, req) {
        return Err(Box::new(too_many()));
    }
    match bearer(req).map(|t| relay.operator_of(t)) {
        Some(Some(_)) => Ok(()),
        Some(None) => {
            failed(relay, req);
            Err(Box::new(unauthorized_response()))
        }
        None => {
            Metrics::count(&relay.metrics.unauthorized);
            Err(Box::new(unauthorized_response()))
        }
    }
}

/// The bearer token of the request, if it carries one.
pub(super) fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// An authenticated operator: their configured name.
#[derive(Debug, Clone)]
pub struct Operator(pub String);

fn unauthorized_response() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header(("WWW-Authenticate", "Bearer"))
        .json(json!({ "ok": false, "error": "an operator bearer token is required" }))
}

fn unauthorized() -> actix_web::Error {
    InternalError::from_response("unauthorized", unauthorized_response()).into()
}

impl FromRequest for Operator {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(relay) = req.app_data::<web::Data<Relay>>() else {
            return ready(Err(unauthorized()));
        };
        // A source that failed too often is not even checked until its minute is over.
        if throttled(relay, req) {
            return ready(Err(
                InternalError::from_response("throttled", too_many()).into()
            ));
        }
        let operator = bearer(req).and_then(|token| relay.operator_of(token));
        ready(operator.map(Operator).ok_or_else(|| {
            failed(relay, req);
            unauthorized()
        }))
    }
}
