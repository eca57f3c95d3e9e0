//! The rollout engine (docs/relay.md, "The rollout engine"): it runs each campaign exactly as its
//! signed plan says, and nothing else. It opens stages, waits out their soak, advances on the
//! success threshold, pauses on the failure threshold, retries failed devices with backoff up to
//! the plan's limit, rolls back to the pre-signed target, quarantines by the plan's rules, and
//! applies gate approvals the custodians signed offline. Operators may pause, resume (a pause of
//! their own), quarantine and roll back through the API.
//!
//! Every change is an event in the relay's own log (formats.md §4.11, §4.12) before it has any
//! effect: the engine's state is a function of those events, which is how a restarted relay gets
//! it back (`Engine::open` replays the log) and how an auditor can check what the relay did.
//!
//! One room per concern, each an `impl Engine` block or its own types:
//!
//! | file | what it holds |
//! |---|---|
//! | `core.rs` | the `Engine` itself: what it holds, opening it, what it hands out and takes in |
//! | `model.rs` | the campaign model: `Campaign`, `Device`, `StateCounts`, `Status`, the plan's stages |
//! | `plan.rs` | plan loading: plans, approvals and relay checkpoint records taken from the mirror |
//! | `record.rs` | the evidence: events staged, applied (live and on replay) and committed |
//! | `schedule.rs` | scheduling: ticks, approvals, retries, thresholds, stage opening, delivery |
//! | `operator.rs` | operator actions: pause, resume, quarantine, rollback |
//! | `intake.rs` | device intake: status reports and broker acknowledgements |
//! | `controls.rs` | the plan's AWS IoT Jobs rollout controls: rate and ramp, in-progress timeout, retry and abort criteria |
//! | `jobs.rs` | the AWS IoT Jobs transport's transitions, mapped to device events |
//! | `jobs_restore.rs` | IN_PROGRESS Jobs executions read back from the relay log after a restart |
//! | `view.rs` | what the API and the dashboard read: campaign views, a device's history |
//! | `error.rs` | `Error`, and `PlanError` for plans not taken up |

mod controls;
mod core;
mod error;
mod intake;
mod jobs;
mod jobs_restore;
mod model;
mod operator;
mod plan;
mod record;
mod schedule;
mod view;

pub use controls::{Executed, Rollout};
pub use core::{
    ACTOR_BROKER, ACTOR_CUSTODIANS, ACTOR_DEVICE, ACTOR_RULE, Engine, Input, Outgoing, now,
};
pub use error::{Error, PlanError, Result};
pub use model::{
    Campaign, Device, PlanEvidence, Policy, Selection, StagePlan, StateCounts, Stats, Status,
};
pub use view::{
    CampaignView, DeliveryInfo, DeviceEntry, DeviceHistory, DeviceLogEntry, DeviceQuery, StageView,
    View,
};
