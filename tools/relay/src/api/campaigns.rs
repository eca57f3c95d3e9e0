//! `GET /api/v1/campaigns[/<c>[/devices]]` and `POST /api/v1/campaigns/<c>/<action>`: what the
//! engine holds, and operators' actions (`Relay::act`, the call the console makes too).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::Operator;
use super::status::{engine_status, refuse};
use crate::engine::{CampaignView, DeviceQuery, Selection};
use crate::relay::{OperatorAction, Relay};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// Why (recorded as the event's cause).
    cause: String,
    /// Devices (quarantine, rollback).
    #[serde(default)]
    devices: Vec<String>,
    /// Rollback scope instead of devices: `failed` or `stage:<n>`.
    #[serde(default)]
    scope: Option<String>,
}

/// Reads an action from its name in the path and the request body; a refusal says what is wrong.
pub(crate) fn parse_action(
    name: &str,
    devices: Vec<String>,
    scope: Option<&str>,
) -> Result<OperatorAction, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let selection = |devices: Vec<String>| match (scope, devices.is_empty()) {
        (None, false) => Ok(Selection::Devices(devices)),
        (Some("failed"), true) => Ok(Selection::Failed),
        (Some(s), true) if s.starts_with("stage:") => s["stage:".len()..]
            .parse()
            .map(Selection::Stage)
            .map_err(|_| bad(format!("scope {s:?}: expected stage:<number>"))),
        _ => Err(bad(format!(
            "{name} needs either \"devices\" or \"scope\": \"failed\" | \"stage:<n>\""
        ))),
    };
    match name {
        "pause" => Ok(OperatorAction::Pause),
        "resume" => Ok(OperatorAction::Resume),
        "quarantine" => selection(devices).map(OperatorAction::Quarantine),
        "rollback" => selection(devices).map(OperatorAction::Rollback),
        other => Err((
            StatusCode::NOT_FOUND,
            format!("no campaign action {other:?} (pause, resume, quarantine, rollback)"),
        )),
    }
}

/// `POST /api/v1/campaigns/{campaign}/{pause|resume|quarantine|rollback}`: an operator's action,
/// logged with the operator as actor and the body's cause.
pub(super) async fn action(
    operator: Operator,
    relay: web::Data<Relay>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (campaign, name) = path.into_inner();
    let body: ActionBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be JSON {{\"cause\": \"...\", \"devices\": [...], \"scope\": \"failed\"|\"stage:N\"}}: {e}"
                ),
            );
        }
    };
    if body.cause.trim().is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a cause is required: it is recorded as evidence",
        );
    }
    let action = match parse_action(&name, body.devices, body.scope.as_deref()) {
        Ok(a) => a,
        Err((status, message)) => return refuse(status, message),
    };
    let result = web::block(move || {
        relay
            .act(&operator.0, &campaign, &action, &body.cause)
            .map(|done| {
                json!({ "ok": true, "campaign": campaign, "action": action.name(),
                    "devices": done.devices, "actor": done.actor, "status": done.status.name() })
            })
    })
    .await;
    match result {
        Ok(Ok(v)) => HttpResponse::Ok().json(v),
        Ok(Err(e)) => refuse(engine_status(&e), e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `GET /api/v1/campaigns`.
pub(super) async fn list(_operator: Operator, relay: web::Data<Relay>) -> HttpResponse {
    let view = relay.engine().view(&DeviceQuery::default());
    let list: Vec<serde_json::Value> = view.campaigns.iter().map(CampaignView::to_json).collect();
    HttpResponse::Ok().json(json!({ "ok": true, "campaigns": list, "problems": view.problems }))
}

/// `GET /api/v1/campaigns/{campaign}`.
pub(super) async fn one(
    _operator: Operator,
    relay: web::Data<Relay>,
    path: web::Path<String>,
) -> HttpResponse {
    let view = relay.engine().campaign_view(&path, &DeviceQuery::default());
    match view {
        Ok(v) => HttpResponse::Ok().json(v.to_json()),
        Err(e) => refuse(engine_status(&e), e),
    }
}

/// `GET /api/v1/campaigns/{campaign}/devices`: every device's stage and state.
pub(super) async fn devices(
    _operator: Operator,
    relay: web::Data<Relay>,
    path: web::Path<String>,
) -> HttpResponse {
    let view = relay.engine().campaign_view(&path, &DeviceQuery::ALL);
    let c = match view {
        Ok(c) => c,
        Err(e) => return refuse(engine_status(&e), e),
    };
    let devices: Vec<serde_json::Value> = c
        .devices
        .iter()
        .map(|d| json!({ "device": d.id, "stage": d.stage, "state": d.state.name() }))
        .collect();
    HttpResponse::Ok().json(json!({ "ok": true, "campaign": c.id, "devices": devices }))
}
