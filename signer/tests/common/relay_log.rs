//! The relay's device-state log of a campaign, as the relay's engine writes it, for the audit test
//! and the audit benchmark (which includes this file): every device delivered then installed,
//! stage by stage; the devices `fails` picks fail their first install and are retried; the first
//! failure in stage 1 pauses the rollout until a signed resume.

use cairn_verifier::campaign::{Action, CampaignEvent, DeviceEvent, DeviceState};
use cairn_verifier::types::{Id, Name, UnixTime};

/// The shape of a campaign's relay log.
pub(crate) struct RelayLog<'a> {
    /// The campaign.
    pub(crate) campaign: &'a str,
    /// The release the devices install.
    pub(crate) release: &'a str,
    /// The time of the first event; each delivery is a second after the one before.
    pub(crate) start: UnixTime,
    /// Cumulative device counts, one per stage.
    pub(crate) stages: &'a [u64],
    /// Whether the device at this position (of `devices`, in stage order) fails its first install.
    pub(crate) fails: &'a dyn Fn(usize) -> bool,
    /// Seconds from a failure to the retry's delivery.
    pub(crate) retry_after: u64,
}

impl RelayLog<'_> {
    /// The events for `devices`, with `approvals` the signer-log indices of the stage-1 opening
    /// and resume. Also returns where the events after the pause start: the custodians record the
    /// log up to there before they sign the resume, and nothing before it depends on the resume's
    /// index.
    #[expect(
        clippy::too_many_lines,
        reason = "the relay's events of one campaign in the order they happen: a script read top to bottom"
    )]
    pub(crate) fn entries(&self, devices: &[String], approvals: [u64; 2]) -> (Vec<Vec<u8>>, usize) {
        let mut after_pause = 0;
        let campaign_id = Id::new(self.campaign).unwrap();
        let release = Id::new(self.release).unwrap();
        let campaign = |action, stage, devices, actor: &str, cause: &str, at| {
            CampaignEvent {
                campaign: campaign_id,
                action,
                stage,
                devices,
                at: UnixTime(at),
                actor: Id::new(actor).unwrap(),
                cause: Name::new(cause).unwrap(),
            }
            .to_cbor()
        };
        let device = |d: &str, state, stage, attempt, actor: &str, cause: &str, at| {
            DeviceEvent {
                campaign: campaign_id,
                device_id: Id::new(d).unwrap(),
                release_id: release,
                state,
                stage,
                attempt,
                at: UnixTime(at),
                actor: Id::new(actor).unwrap(),
                cause: Name::new(cause).unwrap(),
                report: if actor == "device" { attempt } else { 0 },
            }
            .to_cbor()
        };
        let n = devices.len() as u64;
        let mut entries: Vec<Vec<u8>> = Vec::with_capacity(devices.len() * 21 / 10 + 16);
        let mut t = self.start.0;
        entries.push(campaign(Action::Started, 0, n, "rule", "plan imported", t));
        let mut from = 0usize;
        let mut paused = false;
        for (s, &to) in self.stages.iter().enumerate() {
            let to = usize::try_from(to).unwrap();
            let s = s as u64;
            if s == 1 {
                entries.push(campaign(
                    Action::ApprovalApplied,
                    1,
                    approvals[0],
                    "custodians",
                    "open stage 1",
                    t,
                ));
            }
            entries.push(campaign(
                Action::StageOpened,
                s,
                (to - from) as u64,
                "rule",
                "stage opened",
                t,
            ));
            for (k, d) in devices[from..to].iter().enumerate() {
                t += 1;
                entries.push(device(
                    d,
                    DeviceState::Delivered,
                    s,
                    1,
                    "broker",
                    "delivery acknowledged",
                    t,
                ));
                let retried = (self.fails)(from + k);
                if retried {
                    entries.push(device(
                        d,
                        DeviceState::Failed,
                        s,
                        1,
                        "device",
                        "reported install-failed: flash-write",
                        t,
                    ));
                    if s == 1 && !paused {
                        paused = true;
                        entries.push(campaign(
                            Action::Paused,
                            1,
                            0,
                            "rule",
                            "failure threshold",
                            t,
                        ));
                        after_pause = entries.len();
                        entries.push(campaign(
                            Action::ApprovalApplied,
                            1,
                            approvals[1],
                            "custodians",
                            "resume",
                            t,
                        ));
                        entries.push(campaign(
                            Action::Resumed,
                            1,
                            0,
                            "custodians",
                            "signed resume",
                            t,
                        ));
                    }
                    t += self.retry_after;
                    entries.push(device(
                        d,
                        DeviceState::Delivered,
                        s,
                        2,
                        "broker",
                        "retry delivered",
                        t,
                    ));
                }
                entries.push(device(
                    d,
                    DeviceState::Installed,
                    s,
                    if retried { 2 } else { 1 },
                    "device",
                    "reported installed: ok",
                    t,
                ));
            }
            entries.push(campaign(
                Action::StageSucceeded,
                s,
                (to - from) as u64,
                "rule",
                "success threshold met",
                t,
            ));
            from = to;
        }
        entries.push(campaign(
            Action::Completed,
            2,
            n,
            "rule",
            "every stage done",
            t,
        ));
        (entries, after_pause)
    }
}
