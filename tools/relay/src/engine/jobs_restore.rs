//! The Jobs service's IN_PROGRESS executions read back from the relay log after a restart
//! (docs/jobs.md, "After a restart"): a device `delivered` through Jobs has the `delivered` event
//! `job_transition` recorded (its cause names the execution's versionNumber, executionNumber and
//! statusDetails, its time is startedAt), after a `pending` event (queuedAt). Its delivery is
//! built again from the mirror, as every delivery is.

use cairn_vault::Vault;
use cairn_verifier::campaign::DeviceState;

use super::core::Engine;
use super::error::Result;
use crate::jobs::JobStatus;
use crate::jobs::restore::{Ended, Recorded, parse_cause};

impl Engine {
    /// Every execution the relay log shows IN_PROGRESS: each device `delivered` whose last
    /// `delivered` event is a Jobs transition (a device delivered on its own topics, by the
    /// broker's acknowledgement, has none), with its delivery built from `mirror`.
    pub fn jobs_in_progress(&mut self, mirror: &Vault) -> Result<Vec<Recorded>> {
        let delivered: Vec<(String, cairn_verifier::statement::Purpose, Vec<usize>)> = self
            .campaigns
            .values()
            .flat_map(|c| {
                [
                    cairn_verifier::statement::Purpose::Update,
                    cairn_verifier::statement::Purpose::Rollback,
                ]
                .map(|purpose| {
                    let devices = c
                        .devices
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.state == DeviceState::Delivered && d.purpose == purpose)
                        .map(|(i, _)| i)
                        .collect();
                    (c.id.clone(), purpose, devices)
                })
            })
            .collect();
        let mut out = Vec::new();
        for (campaign, purpose, devices) in delivered {
            if devices.is_empty() {
                continue;
            }
            self.prepare(mirror, &campaign, &devices, purpose)?;
            for i in devices {
                let (id, release, delivery) = {
                    let c = self.campaign(&campaign)?;
                    let Some(d) = c.devices.get(i) else { continue };
                    let Some(delivery) = d.track(purpose).delivery.clone() else {
                        continue;
                    };
                    (d.id.clone(), c.release(purpose).to_owned(), delivery)
                };
                let events = self.device_history(&campaign, &id)?.events;
                let Some(at) = events
                    .iter()
                    .rposition(|e| e.state == DeviceState::Delivered)
                else {
                    continue;
                };
                let Some(transition) =
                    parse_cause(&events[at].cause).filter(|t| t.status == JobStatus::InProgress)
                else {
                    continue; // delivered on the device's own topic
                };
                let queued_at = events[..at]
                    .iter()
                    .rev()
                    .find(|e| e.state == DeviceState::Pending)
                    .map_or(events[at].at, |e| e.at);
                out.push(Recorded {
                    campaign: campaign.clone(),
                    thing: id,
                    release,
                    transition,
                    queued_at,
                    started_at: events[at].at,
                    delivery,
                });
            }
        }
        Ok(out)
    }

    /// The last ended execution of every device waiting for a retry of the same release: each
    /// device `pending` after a failure whose last Jobs transition in the relay log is a terminal
    /// one (`job FAILED v3 #1`, `job TIMED_OUT v3 #1`) of the release it waits for.
    pub fn jobs_ended(&self) -> Result<Vec<Ended>> {
        let waiting: Vec<(String, String, String)> = self
            .campaigns
            .values()
            .flat_map(|c| {
                c.devices
                    .iter()
                    .filter(|d| d.state == DeviceState::Pending && d.failures > 0)
                    .map(|d| (c.id.clone(), d.id.clone(), c.release(d.purpose).to_owned()))
            })
            .collect();
        let mut out = Vec::new();
        for (campaign, thing, release) in waiting {
            let events = self.device_history(&campaign, &thing)?.events;
            // A failure's cause starts with its outcome (`install-failed: job FAILED v3 #1`).
            let last = events.iter().rev().find_map(|e| {
                let at = e.cause.find("job ")?;
                parse_cause(&e.cause[at..])
                    .filter(|t| t.status.is_terminal())
                    .map(|t| (t, e))
            });
            if let Some((transition, e)) = last
                && e.release == release
            {
                out.push(Ended {
                    campaign: campaign.clone(),
                    thing,
                    release,
                    transition,
                    at: e.at,
                });
            }
        }
        Ok(out)
    }
}
