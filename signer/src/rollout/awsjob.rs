//! `cairn rollout export-aws-jobs`: the signed plan as the request bodies of AWS IoT's
//! `CreateJob` (AWS IoT API Reference, `CreateJob`; botocore's `iot` service model 2015-05-28,
//! shape `CreateJobRequest`), for operators who run AWS IoT Jobs on AWS IoT Core itself rather
//! than through the relay (docs/jobs.md, "On AWS IoT Core: the CreateJob export").
//!
//! One job per stage: a job has one document (at most 32 KB) for all its targets, and cairn's
//! stages open on the relay's soak and success thresholds and on custodians' signed approvals,
//! which AWS has no counterpart for. Each stage's job targets one static thing group (its
//! members are listed beside the request) and carries the plan's Jobs controls (key 17) as
//! `jobExecutionsRolloutConfig`, `abortConfig`, `timeoutConfig` and `jobExecutionsRetryConfig`.
//! The document is the same for every device of the stage: the release, the campaign and where
//! the device fetches its own delivery (`{thingName}` in the URL, which the device fills in);
//! nothing in it is trusted until the device's boot check has verified the delivery.
//!
//! And one rollback job: the plan's pre-signed rollback target for the devices whose update
//! failed, which only the campaign's course decides. It is a continuous job (`targetSelection`
//! `CONTINUOUS`, AWS IoT developer guide, "Continuous jobs") on a thing group that starts empty:
//! adding a device to the group (as the relay's rule would roll it back: attempts or retries run
//! out) queues the rollback for it. It carries the plan's rate, timeout and retry controls, not
//! its abort criteria: a rollback aborted by its own failures would strand the devices it is for.

use cairn_vault::{Query, Vault};
use cairn_verifier::campaign::stage_order_key;
use cairn_verifier::crypto::Software;
use cairn_verifier::rollout::RolloutPlan;
use cairn_verifier::rollout::jobs::JobsControls;
use cairn_verifier::statement::{Kind, Purpose, Statement};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// AWS's limit on a job document (`JobDocument`: at most 32,768 characters).
pub const MAX_DOCUMENT: usize = 32_768;
/// Where the device's delivery URL puts its own thing name.
pub const THING_PLACEHOLDER: &str = "{thingName}";

/// Where the jobs go and where devices fetch their deliveries.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// AWS Region of the thing groups (`eu-central-1`).
    pub region: String,
    /// AWS account id, 12 digits.
    pub account: String,
    /// The delivery URL, with `{thingName}` where each device puts its own thing name.
    pub delivery_url: String,
}

/// One `CreateJob` request: the job id, the stage, its thing group and members, and the body.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// The job id (also in the body).
    pub job_id: String,
    /// The stage's name.
    pub stage: String,
    /// The thing group the job targets.
    pub thing_group: String,
    /// The stage's devices (thing names), in stage order; empty for the rollback job, whose
    /// thing group is filled as devices need it.
    pub things: Vec<String>,
    /// A continuous job (the rollback): devices added to its thing group later get it too.
    pub continuous: bool,
    /// The request body (`aws iot create-job --cli-input-json`).
    pub body: Value,
}

/// `s` with every character outside `[A-Za-z0-9_-]` made `_`, cut to `max` characters, then `-`
/// and 8 hex digits of SHA-256 over `s`: a valid `JobId` / thing group name that two different
/// inputs do not share.
fn aws_name(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect();
    let digest = Sha256::digest(s.as_bytes());
    format!(
        "{clean}-{}",
        hex::encode(digest.get(..4).unwrap_or_default())
    )
}

fn check_options(opts: &ExportOptions) -> Result<()> {
    let bad = |what: &str, why: &str| Err(Error::Plan(format!("{what}: {why}")));
    if opts.account.len() != 12 || !opts.account.bytes().all(|b| b.is_ascii_digit()) {
        return bad("--account", "an AWS account id is 12 digits");
    }
    if opts.region.is_empty()
        || !opts
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("--region", "an AWS Region looks like eu-central-1");
    }
    if !opts.delivery_url.starts_with("https://") || !opts.delivery_url.contains(THING_PLACEHOLDER)
    {
        return bad(
            "--delivery-url",
            "an https:// URL with {thingName} where each device puts its thing name",
        );
    }
    if opts.delivery_url.chars().any(char::is_control) {
        return bad("--delivery-url", "control characters");
    }
    Ok(())
}

/// `CreateJob`'s rollout, abort, timeout and retry members for the plan's controls.
pub fn controls_json(c: &JobsControls) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let mut rollout = serde_json::Map::new();
    if let Some(m) = c.maximum_per_minute {
        rollout.insert("maximumPerMinute".into(), m.into());
    }
    if let Some(e) = c.exponential_rate {
        let mut criteria = serde_json::Map::new();
        criteria.insert(e.increase.name().into(), e.increase.things().into());
        rollout.insert(
            "exponentialRate".into(),
            json!({
                "baseRatePerMinute": e.base_per_minute,
                "incrementFactor": f64::from(e.increment_tenths) / 10.0,
                "rateIncreaseCriteria": criteria,
            }),
        );
    }
    if !rollout.is_empty() {
        out.insert("jobExecutionsRolloutConfig".into(), rollout.into());
    }
    let aborts: Vec<Value> = c
        .abort_criteria()
        .map(|a| {
            json!({
                "failureType": a.failure_type.name(),
                "action": "CANCEL",
                "thresholdPercentage": f64::from(a.threshold_hundredths) / 100.0,
                "minNumberOfExecutedThings": a.min_executed,
            })
        })
        .collect();
    if !aborts.is_empty() {
        out.insert("abortConfig".into(), json!({ "criteriaList": aborts }));
    }
    if let Some(m) = c.in_progress_timeout_minutes {
        out.insert(
            "timeoutConfig".into(),
            json!({ "inProgressTimeoutInMinutes": m }),
        );
    }
    let retries: Vec<Value> = c
        .retry_criteria()
        .map(|r| json!({ "failureType": r.failure_type.name(), "numberOfRetries": r.retries }))
        .collect();
    if !retries.is_empty() {
        out.insert(
            "jobExecutionsRetryConfig".into(),
            json!({ "criteriaList": retries }),
        );
    }
    out
}

/// The `CreateJob` requests of `campaign`'s signed plan in `vault`, one per stage.
pub fn create_job_requests(
    vault: &Vault,
    campaign: &str,
    opts: &ExportOptions,
) -> Result<Vec<JobRequest>> {
    check_options(opts)?;
    let mut found = None;
    for index in vault.query_indices(Query::Kind(Kind::PLAN))? {
        let entry = vault.entry(index)?;
        if let Statement::Plan { plan, .. } = Statement::decode(&entry)?
            && plan.campaign.as_str() == campaign
        {
            found = Some((index, entry.clone()));
        }
    }
    let (plan_index, entry) = found.ok_or_else(|| {
        Error::Plan(format!(
            "campaign {campaign:?} has no rollout plan in the log"
        ))
    })?;
    let Statement::Plan { plan, .. } = Statement::decode(&entry)? else {
        return Err(Error::Plan(format!("log entry {plan_index} is not a plan")));
    };
    let things = ordered_devices(vault, &plan, plan_index)?;
    let mut out = Vec::new();
    let mut start = 0usize;
    for stage in plan.stages.iter() {
        let end = usize::try_from(stage.devices).unwrap_or(usize::MAX);
        let members: Vec<String> = things.get(start..end).unwrap_or_default().to_vec();
        start = end;
        let label = format!("{campaign}-{}", stage.name.as_str());
        let job_id = aws_name(&label, 55);
        let thing_group = aws_name(&label, 119);
        let document = json!({
            "operation": "cairn.install",
            "campaign": campaign,
            "stage": stage.name.as_str(),
            "release": plan.release_id.as_str(),
            "releaseDigest": hex::encode(plan.release_digest),
            "planLogIndex": plan_index,
            "delivery": {
                "format": "cairn-delivery-v1",
                "url": opts.delivery_url,
            },
        })
        .to_string();
        if document.len() > MAX_DOCUMENT {
            return Err(Error::Plan(format!(
                "the job document of stage {} is {} bytes, above AWS's {MAX_DOCUMENT}",
                stage.name,
                document.len()
            )));
        }
        let mut body = serde_json::Map::new();
        body.insert("jobId".into(), job_id.clone().into());
        body.insert(
            "targets".into(),
            json!([format!(
                "arn:aws:iot:{}:{}:thinggroup/{thing_group}",
                opts.region, opts.account
            )]),
        );
        body.insert("document".into(), document.into());
        body.insert(
            "description".into(),
            format!(
                "cairn campaign {campaign}, stage {} ({} devices): release {}, signed plan at log index {plan_index}",
                stage.name,
                members.len(),
                plan.release_id
            )
            .into(),
        );
        body.insert("targetSelection".into(), "SNAPSHOT".into());
        if let Some(c) = &plan.jobs {
            body.extend(controls_json(c));
        }
        out.push(JobRequest {
            job_id,
            stage: stage.name.as_str().to_owned(),
            thing_group,
            things: members,
            continuous: false,
            body: body.into(),
        });
    }
    out.push(rollback_job(campaign, &plan, plan_index, opts)?);
    Ok(out)
}

/// The rollback job: the plan's pre-signed rollback target, continuous, on an empty thing group.
fn rollback_job(
    campaign: &str,
    plan: &RolloutPlan<'_>,
    plan_index: u64,
    opts: &ExportOptions,
) -> Result<JobRequest> {
    let label = format!("{campaign}-rollback");
    let job_id = aws_name(&label, 55);
    let thing_group = aws_name(&label, 119);
    let document = json!({
        "operation": "cairn.rollback",
        "campaign": campaign,
        "release": plan.rollback_release_id.as_str(),
        "releaseDigest": hex::encode(plan.rollback_digest),
        "planLogIndex": plan_index,
        "delivery": {
            "format": "cairn-delivery-v1",
            "url": opts.delivery_url,
        },
    })
    .to_string();
    if document.len() > MAX_DOCUMENT {
        return Err(Error::Plan(format!(
            "the rollback job's document is {} bytes, above AWS's {MAX_DOCUMENT}",
            document.len()
        )));
    }
    let mut body = serde_json::Map::new();
    body.insert("jobId".into(), job_id.clone().into());
    body.insert(
        "targets".into(),
        json!([format!(
            "arn:aws:iot:{}:{}:thinggroup/{thing_group}",
            opts.region, opts.account
        )]),
    );
    body.insert("document".into(), document.into());
    body.insert(
        "description".into(),
        format!(
            "cairn campaign {campaign}, rollback to {} (pre-signed in the plan at log index \
             {plan_index}): add a device to the thing group when its update attempts run out",
            plan.rollback_release_id
        )
        .into(),
    );
    body.insert("targetSelection".into(), "CONTINUOUS".into());
    if let Some(c) = &plan.jobs {
        let mut controls = controls_json(c);
        controls.remove("abortConfig");
        body.extend(controls);
    }
    Ok(JobRequest {
        job_id,
        stage: "rollback".into(),
        thing_group,
        things: Vec::new(),
        continuous: true,
        body: body.into(),
    })
}

/// The plan's eligible devices in stage order (formats.md §4.9, "Stage membership"), from its
/// update manifests logged right after it.
fn ordered_devices(vault: &Vault, plan: &RolloutPlan<'_>, plan_index: u64) -> Result<Vec<String>> {
    let decisions = 2 * plan.eligible + plan.rejected;
    let mut devices = Vec::with_capacity(usize::try_from(plan.eligible).unwrap_or(0));
    for index in plan_index + 1..=plan_index + decisions {
        let entry = vault.entry(index)?;
        if let Statement::Manifest(m) = Statement::decode(&entry)?
            && m.purpose == Purpose::Update
            && m.campaign.as_str() == plan.campaign.as_str()
        {
            devices.push(m.device_id.as_str().to_owned());
        }
    }
    if devices.len() as u64 != plan.eligible {
        return Err(Error::Plan(format!(
            "the plan at log index {plan_index} names {} eligible devices, the log holds {} update manifests after it",
            plan.eligible,
            devices.len()
        )));
    }
    let campaign = plan.campaign.as_str();
    devices.sort_by_cached_key(|d| stage_order_key(&Software, campaign, d));
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_job_ids() {
        let n = aws_name("campaign-2026-11-2.4.1-canary", 55);
        assert!(
            n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert!(n.starts_with("campaign-2026-11-2_4_1-canary-"), "{n}");
        assert_ne!(aws_name("a.b", 55), aws_name("a_b", 55));
        assert!(aws_name(&"x".repeat(200), 55).len() <= 64);
    }
}
