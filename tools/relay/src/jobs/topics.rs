//! The MQTT topics of the AWS IoT Jobs device API (developer guide, "Jobs device MQTT API
//! operations"), all under `$aws/things/<thingName>/jobs/`. The relay plays the Jobs service: it
//! subscribes to the request topics of every thing and publishes the answers and notifications.
//! It subscribes to each request topic explicitly: an MQTT wildcard at the first level never
//! matches a topic that starts with `$` (MQTT 3.1.1 §4.7.2).

use sha2::{Digest, Sha256};

/// The prefix of every Jobs topic.
const PREFIX: &str = "$aws/things/";

/// The request topics the relay subscribes to, for every thing.
pub const REQUEST_FILTERS: [&str; 4] = [
    "$aws/things/+/jobs/get",
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/get",
    "$aws/things/+/jobs/+/update",
];

/// What a device asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GetPendingJobExecutions` (`jobs/get`).
    GetPending,
    /// `StartNextPendingJobExecution` (`jobs/start-next`).
    StartNext,
    /// `DescribeJobExecution` (`jobs/<jobId>/get`; `$next` for the next pending one).
    Describe(String),
    /// `UpdateJobExecution` (`jobs/<jobId>/update`).
    Update(String),
}

impl Request {
    /// The topic this request was published on, for `thing`: answers go to it plus
    /// `/accepted` or `/rejected`.
    pub fn topic(&self, thing: &str) -> String {
        match self {
            Request::GetPending => format!("{PREFIX}{thing}/jobs/get"),
            Request::StartNext => format!("{PREFIX}{thing}/jobs/start-next"),
            Request::Describe(job) => format!("{PREFIX}{thing}/jobs/{job}/get"),
            Request::Update(job) => format!("{PREFIX}{thing}/jobs/{job}/update"),
        }
    }
}

/// A request topic `$aws/things/<thing>/jobs/<rest>`: the thing (a valid cairn device id) and
/// what follows `jobs/`. `None` for any other topic (it is not addressed to the Jobs service).
pub fn split(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(PREFIX)?;
    let (thing, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("jobs/")?;
    cairn_verifier::types::Id::new(thing)?;
    Some((thing, rest))
}

/// The request that `rest` (what follows `jobs/`) names, or `Err` with why the topic is not a
/// Jobs request (AWS answers `InvalidTopic`).
pub fn parse(rest: &str) -> Result<Request, &'static str> {
    match rest {
        "get" => return Ok(Request::GetPending),
        "start-next" => return Ok(Request::StartNext),
        _ => {}
    }
    let (job, op) = rest.rsplit_once('/').ok_or("not a Jobs request topic")?;
    if job != "$next" && !valid_job_id(job) {
        return Err("the job id is not 1 to 64 letters, digits, '-' or '_'");
    }
    match op {
        "get" => Ok(Request::Describe(job.to_owned())),
        "update" if job == "$next" => Err("$next cannot be updated"),
        "update" => Ok(Request::Update(job.to_owned())),
        _ => Err("not a Jobs request topic"),
    }
}

/// A job id as AWS allows it: 1 to 64 of `[a-zA-Z0-9_-]`.
pub fn valid_job_id(job: &str) -> bool {
    (1..=64).contains(&job.len())
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The job that delivers `release` in `campaign`: their ids with every other character made
/// `_`, at most 55 characters, then `-` and 8 hex digits of SHA-256 over both ids, so two
/// campaigns whose ids differ only where they were replaced still get two jobs.
pub fn job_id(campaign: &str, release: &str) -> String {
    let mut readable: String = format!("{campaign}_{release}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    readable.truncate(55);
    let digest = Sha256::new()
        .chain_update(campaign.as_bytes())
        .chain_update([0])
        .chain_update(release.as_bytes())
        .finalize();
    format!("{readable}-{}", hex::encode(&digest[..4]))
}

/// `notify-next` of `thing`: the next pending execution changed.
pub fn notify_next(thing: &str) -> String {
    format!("{PREFIX}{thing}/jobs/notify-next")
}

/// `notify` of `thing`: its list of pending executions changed.
pub fn notify(thing: &str) -> String {
    format!("{PREFIX}{thing}/jobs/notify")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics() {
        assert_eq!(
            split("$aws/things/sc-1/jobs/start-next"),
            Some(("sc-1", "start-next"))
        );
        assert_eq!(split("$aws/things/sc 1/jobs/get"), None);
        assert_eq!(split("cairn/sc-1/status"), None);
        assert_eq!(split("$aws/things/sc-1/shadow/get"), None);
        assert_eq!(parse("get"), Ok(Request::GetPending));
        assert_eq!(parse("start-next"), Ok(Request::StartNext));
        assert_eq!(parse("j-1/get"), Ok(Request::Describe("j-1".into())));
        assert_eq!(parse("$next/get"), Ok(Request::Describe("$next".into())));
        assert_eq!(parse("j_1/update"), Ok(Request::Update("j_1".into())));
        assert!(parse("$next/update").is_err());
        assert!(parse("j.1/update").is_err());
        assert!(parse("j-1/delete").is_err());
        assert!(parse("j-1").is_err());
        assert_eq!(
            Request::Update("j".into()).topic("sc-1"),
            "$aws/things/sc-1/jobs/j/update"
        );
    }

    #[test]
    fn job_ids_are_valid_and_distinct() {
        let a = job_id("campaign-2026-11-2.4.1", "controller-fw-2.4.1");
        assert!(
            a.starts_with("campaign-2026-11-2_4_1_controller-fw-2_4_1-"),
            "{a}"
        );
        assert!(valid_job_id(&a));
        assert_ne!(a, job_id("campaign-2026-11-2_4_1", "controller-fw-2.4.1"));
        let long = job_id(&"c".repeat(200), &"r".repeat(200));
        assert!(valid_job_id(&long) && long.len() == 64, "{long}");
        assert!(!valid_job_id(""));
        assert!(!valid_job_id(&"a".repeat(65)));
    }
}
