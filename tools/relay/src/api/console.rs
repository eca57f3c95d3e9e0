//! The dashboard and the operator console over HTTP (docs/relay.md, "The dashboard and the
//! operator console"). An operator signs in with their bearer token and gets a session cookie
//! (`HttpOnly`, `Secure`, `SameSite=Strict`); every form carries the session's CSRF value (the
//! sign-in form a value from its own cookie). A form without a session is refused on the request
//! head (401), one whose CSRF value does not match (403), both before anything changes. Every
//! action is `Relay::act`, the call the API makes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth::{SESSION, cookie, failed, throttled};
use super::campaigns::parse_action;
use super::status::engine_status;
use crate::config::PublicRoute;
use crate::dashboard::{self, Access, Filter, Page};
use crate::engine::DeviceQuery;
use crate::metrics::Metrics;
use crate::relay::{OperatorAction, Relay};
use crate::session::{LIFETIME, Session, random_hex, same_secret};

/// The sign-in form's CSRF cookie.
const SIGN_IN: &str = "cairn_signin";
/// What the pages may load: their own script, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
                   img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// The routes of the dashboard and the console.
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(overview))
        .route("/dashboard/live.js", web::get().to(live_js))
        .route("/dashboard/sign-in", web::post().to(sign_in))
        .route("/dashboard/sign-out", web::post().to(sign_out))
        .route(
            "/dashboard/devices/{campaign}/{device}",
            web::get().to(device),
        )
        .service(
            web::resource("/dashboard/campaigns/{campaign}/{action}")
                .app_data(web::FormConfig::default().limit(1 << 20))
                .route(web::post().to(act)),
        );
}

/// A `Set-Cookie` value: `HttpOnly`, `Secure`, `SameSite=Strict`, for the whole relay.
fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}")
}

/// An HTML response with the pages' security headers.
fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// A refusal as a page: what happened, and the way back.
fn refusal(status: StatusCode, message: &str, back: &str) -> HttpResponse {
    html(
        status,
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · cairn relay</title></head>\
             <body><h1>{}</h1><p class=\"error\" role=\"alert\">{}</p><p><a href=\"{}\">back</a></p></body></html>",
            status.as_u16(),
            status.canonical_reason().unwrap_or("refused"),
            dashboard::esc(message),
            dashboard::esc(back)
        ),
    )
}

/// A signed-in operator's session, from the cookie on the request head.
struct Signed {
    id: String,
    session: Session,
}

impl FromRequest for Signed {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let relay = req.app_data::<web::Data<Relay>>();
        let signed = relay.and_then(|relay| {
            let id = cookie(req, SESSION)?;
            let session = relay.sessions.get(&id)?;
            Some(Signed { id, session })
        });
        std::future::ready(signed.ok_or_else(|| {
            if let Some(relay) = relay {
                Metrics::count(&relay.metrics.unauthorized);
            }
            actix_web::error::InternalError::from_response(
                "no session",
                refusal(
                    StatusCode::UNAUTHORIZED,
                    "sign in with your operator token first: nothing was changed",
                    "/dashboard",
                ),
            )
            .into()
        }))
    }
}

/// The session of the request, if signed in.
fn signed(relay: &Relay, req: &HttpRequest) -> Option<Signed> {
    let (id, session) = super::auth::session(relay, req)?;
    Some(Signed { id, session })
}

/// Renders a page for whoever asks: an operator with their forms, or a reader with the sign-in
/// form (and its CSRF cookie, set when it is new).
fn page(
    relay: &web::Data<Relay>,
    req: &HttpRequest,
    render: impl FnOnce(Access<'_>) -> Result<String, Box<HttpResponse>>,
) -> HttpResponse {
    if let Some(s) = signed(relay, req) {
        let flash = relay.sessions.take_flash(&s.id);
        let access = Access::Operator {
            name: &s.session.operator,
            csrf: &s.session.csrf,
            flash: flash.as_deref(),
        };
        return render(access).map_or_else(|r| *r, |body| html(StatusCode::OK, body));
    }
    let held = cookie(req, SIGN_IN).filter(|c| c.len() == 64 && hex::decode(c).is_ok());
    let (csrf, new) = match held {
        Some(c) => (c, false),
        None => match random_hex() {
            Ok(c) => (c, true),
            Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "/"),
        },
    };
    // Unless `[http] public` opens the pages (or the request carries a valid bearer token, as an
    // API client's would), a reader gets the sign-in form and nothing else.
    let open = relay.http.public.contains(&PublicRoute::Dashboard)
        || (super::auth::bearer(req).is_some()
            && super::auth::may_read(relay, req, PublicRoute::Dashboard).is_ok());
    let mut response = if open {
        render(Access::SignIn { csrf: &csrf })
            .map_or_else(|r| *r, |body| html(StatusCode::OK, body))
    } else {
        html(StatusCode::UNAUTHORIZED, dashboard::sign_in_page(&csrf))
    };
    if new && let Ok(v) = HeaderValue::from_str(&set_cookie(SIGN_IN, &csrf, 3600)) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /dashboard[?state=…&stage=…]`.
async fn overview(
    relay: web::Data<Relay>,
    req: HttpRequest,
    filter: web::Query<Filter>,
) -> HttpResponse {
    let view = relay.engine().view(&filter.query());
    let witnesses = relay.witness_views();
    page(&relay, &req, |access| {
        Ok(dashboard::render(&Page {
            origin: relay.origin(),
            mirror_size: relay.vault().size(),
            view: &view,
            access,
            filter: &filter,
            witnesses: &witnesses,
        }))
    })
}

/// `GET /dashboard/devices/{campaign}/{device}`.
async fn device(
    relay: web::Data<Relay>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (campaign, id) = path.into_inner();
    let (history, view) = {
        let engine = relay.engine();
        (
            engine.device_history(&campaign, &id),
            engine.view(&DeviceQuery::default()),
        )
    };
    let witnesses = relay.witness_views();
    page(&relay, &req, |access| {
        let history = history
            .map_err(|e| Box::new(refusal(engine_status(&e), &e.to_string(), "/dashboard")))?;
        Ok(dashboard::render_device(
            &Page {
                origin: relay.origin(),
                mirror_size: relay.vault().size(),
                view: &view,
                access,
                filter: &Filter::default(),
                witnesses: &witnesses,
            },
            &history,
        ))
    })
}

/// `GET /dashboard/live.js`.
async fn live_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(dashboard::LIVE_JS)
}

#[derive(Deserialize)]
struct SignInForm {
    csrf: String,
    token: String,
}

/// `POST /dashboard/sign-in`: the token checked as the API checks it, then a session.
async fn sign_in(
    relay: web::Data<Relay>,
    req: HttpRequest,
    form: web::Form<SignInForm>,
) -> HttpResponse {
    let held = cookie(&req, SIGN_IN).unwrap_or_default();
    if held.is_empty() || !same_secret(&held, &form.csrf) {
        Metrics::count(&relay.metrics.unauthorized);
        return refusal(
            StatusCode::FORBIDDEN,
            "the sign-in form's CSRF value does not match: load the dashboard and sign in again",
            "/dashboard",
        );
    }
    if throttled(&relay, &req) {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins from this address: try again in a minute",
            "/dashboard",
        );
    }
    let Some(operator) = relay.operator_of(&form.token) else {
        failed(&relay, &req);
        return refusal(
            StatusCode::UNAUTHORIZED,
            "that is not an operator token",
            "/dashboard",
        );
    };
    let id = match relay.sessions.open(&operator) {
        Ok((id, _)) => id,
        Err(e) => {
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
                "/dashboard",
            );
        }
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/dashboard"))
        .append_header((
            header::SET_COOKIE,
            set_cookie(SESSION, &id, LIFETIME.as_secs()),
        ))
        .append_header((header::SET_COOKIE, set_cookie(SIGN_IN, "", 0)))
        .finish()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /dashboard/sign-out`.
async fn sign_out(
    signed: Signed,
    relay: web::Data<Relay>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if !same_secret(&signed.session.csrf, &form.csrf) {
        return bad_csrf(&relay, "/dashboard");
    }
    relay.sessions.close(&signed.id);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/dashboard"))
        .append_header((header::SET_COOKIE, set_cookie(SESSION, "", 0)))
        .finish()
}

fn bad_csrf(relay: &Relay, back: &str) -> HttpResponse {
    Metrics::count(&relay.metrics.unauthorized);
    refusal(
        StatusCode::FORBIDDEN,
        "the form's CSRF value does not match your session: nothing was changed",
        back,
    )
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    cause: String,
    /// `devices` (the ids in `devices`), `failed`, or `stage:<n>`.
    #[serde(default)]
    scope: Option<String>,
    /// Device ids, separated by white space or commas.
    #[serde(default)]
    devices: String,
    /// Where to go afterwards (a dashboard page).
    #[serde(default)]
    back: Option<String>,
}

/// `POST /dashboard/campaigns/{campaign}/{action}`: an operator's action from a form, recorded
/// with the reason as its cause; then back to the page it came from with what it did.
async fn act(
    signed: Signed,
    relay: web::Data<Relay>,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
) -> HttpResponse {
    let form = form.into_inner();
    let back = form
        .back
        .filter(|b| b.starts_with("/dashboard") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/dashboard".into());
    if !same_secret(&signed.session.csrf, &form.csrf) {
        return bad_csrf(&relay, &back);
    }
    let (campaign, name) = path.into_inner();
    if form.cause.trim().is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            "a reason is required: it is recorded as evidence",
            &back,
        );
    }
    let devices: Vec<String> = form
        .devices
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    let scope = form.scope.as_deref().filter(|s| *s != "devices");
    let action = match parse_action(&name, devices, scope) {
        Ok(a) => a,
        Err((status, message)) => return refusal(status, &message, &back),
    };
    let operator = signed.session.operator.clone();
    let cause = form.cause.trim().to_owned();
    let relay2 = relay.clone();
    let (campaign2, action2, cause2) = (campaign.clone(), action.clone(), cause.clone());
    let done = web::block(move || relay2.act(&operator, &campaign2, &action2, &cause2)).await;
    match done {
        Ok(Ok(done)) => {
            let devices = match action {
                OperatorAction::Quarantine(_) | OperatorAction::Rollback(_) => {
                    format!(": {} devices", done.devices)
                }
                OperatorAction::Pause | OperatorAction::Resume => String::new(),
            };
            relay.sessions.flash(
                &signed.id,
                format!(
                    "{} of campaign {campaign}{devices}; the campaign is {}. Recorded as {} with your reason \"{cause}\".",
                    action.name(),
                    done.status.name(),
                    done.actor
                ),
            );
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, back))
                .finish()
        }
        Ok(Err(e)) => refusal(engine_status(&e), &e.to_string(), &back),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), &back),
    }
}
