//! `cairn rollout export-aws-jobs`: a campaign's signed plan as AWS IoT `CreateJob` request
//! bodies, one job per stage (docs/jobs.md, "On AWS IoT Core: the CreateJob export").

use std::path::Path;

use anyhow::Context;
use cairn_signer::rollout::awsjob::{ExportOptions, create_job_requests};
use serde_json::json;

use crate::custody::open;
use crate::output::{CliResult, Output};

/// Writes `<job id>.json` (the request body) and `<job id>.things` (the thing group's members,
/// one a line) per stage into `dir`, and the rollback job's request (its thing group starts
/// empty: no `.things` file).
pub(crate) fn export(
    home: &Path,
    campaign: &str,
    opts: &ExportOptions,
    dir: &Path,
    out: Output,
) -> CliResult {
    let appliance = open(home)?;
    let jobs = create_job_requests(appliance.vault(), campaign, opts)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut lines = Vec::new();
    let mut written = Vec::new();
    for job in &jobs {
        let body = dir.join(format!("{}.json", job.job_id));
        let things = dir.join(format!("{}.things", job.job_id));
        let text = serde_json::to_string_pretty(&job.body).context("encoding the request")?;
        std::fs::write(&body, text + "\n")
            .with_context(|| format!("writing {}", body.display()))?;
        if job.continuous {
            lines.push(format!(
                "  {:<12}continuous  job {}  thing group {} (add a device when its update attempts run out)",
                job.stage, job.job_id, job.thing_group
            ));
            written.push(json!({
                "stage": job.stage,
                "job_id": job.job_id,
                "thing_group": job.thing_group,
                "continuous": true,
                "request": body,
            }));
            continue;
        }
        let mut list = job.things.join("\n");
        list.push('\n');
        std::fs::write(&things, list).with_context(|| format!("writing {}", things.display()))?;
        lines.push(format!(
            "  {:<12}{:>8} devices  job {}  thing group {}",
            job.stage,
            job.things.len(),
            job.job_id,
            job.thing_group
        ));
        written.push(json!({
            "stage": job.stage,
            "job_id": job.job_id,
            "thing_group": job.thing_group,
            "devices": job.things.len(),
            "request": body,
            "things": things,
        }));
    }
    let controls = jobs
        .first()
        .map(|j| {
            [
                "jobExecutionsRolloutConfig",
                "abortConfig",
                "timeoutConfig",
                "jobExecutionsRetryConfig",
            ]
            .into_iter()
            .filter(|k| j.body.get(k).is_some())
            .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    out.emit(
        &format!(
            "campaign {campaign}: {} CreateJob requests written to {} (one job per stage, create each when its stage opens; and the rollback job):\n{}\ncontrols from the signed plan: {}",
            jobs.len(),
            dir.display(),
            lines.join("\n"),
            if controls.is_empty() {
                "none (the plan has no [jobs] section)".to_owned()
            } else {
                controls.join(", ")
            }
        ),
        &json!({ "ok": true, "campaign": campaign, "jobs": written, "controls": controls }),
    );
    Ok(())
}
