//! The engine itself: what it holds (campaigns, the relay log, the queue of deliveries), opening
//! it, and the types it hands out (`Outgoing`) and takes in (`Input`). The other rooms each add an
//! `impl Engine` block.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use cairn_vault::Vault;
use cairn_verifier::cose::ReleaseKey;

use super::error::{Error, Result};
use super::model::{Campaign, Stats};
use crate::statelog::StateLog;

/// The relay applying the signed plan.
pub const ACTOR_RULE: &str = "rule";
/// A device's own status report.
pub const ACTOR_DEVICE: &str = "device";
/// The broker acknowledging a delivery.
pub const ACTOR_BROKER: &str = "broker";
/// A gate approval signed by the custodians.
pub const ACTOR_CUSTODIANS: &str = "custodians";

/// A delivery to hand to a transport (today the MQTT link's own topics).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Campaign.
    pub campaign: String,
    /// Device.
    pub device: String,
    /// Release of the delivery (the campaign's or its rollback target).
    pub release: String,
    /// The envelope (formats.md §5).
    pub delivery: Arc<[u8]>,
    /// When the delivery was queued (the device's `pending` event).
    pub queued_at: u64,
}

/// What a transport hands the engine thread. `A` is the transport's handle for acknowledging a
/// status message once what it said is in the relay log (an MQTT `Publish` for the MQTT link).
#[derive(Debug)]
pub enum Input<A> {
    /// A device's status message (formats.md §7).
    Status {
        /// The device (authenticated by the transport: for MQTT, its topic).
        device: String,
        /// The payload.
        payload: Vec<u8>,
        /// Acknowledged to the transport once the report is recorded (or refused).
        ack: Option<A>,
    },
    /// The transport acknowledged deliveries: a burst of them, in the order acknowledged (one
    /// hand-over, and one wake-up of the engine thread, per burst).
    Acked(Vec<Outgoing>),
    /// A request to the AWS IoT Jobs device API (`$aws/things/<thing>/jobs/<rest>`).
    Jobs {
        /// The thing (authenticated by the transport: its topic, which the broker's ACL binds to
        /// its certificate).
        thing: String,
        /// What follows `jobs/` in the topic.
        rest: String,
        /// The payload (JSON).
        payload: Vec<u8>,
        /// Acknowledged to the transport once what it changed is recorded.
        ack: Option<A>,
    },
}

/// A gate approval found in the mirror whose signature verified.
#[derive(Debug, Clone)]
pub(super) struct PendingApproval {
    pub(super) index: u64,
    pub(super) campaign: String,
    pub(super) plan_digest: cairn_verifier::types::Hash,
    pub(super) stage: u64,
    pub(super) action: cairn_verifier::campaign::ApprovalAction,
}

/// The engine: campaigns, the relay log they are recorded in, and the queue of deliveries.
pub struct Engine {
    pub(super) log: StateLog,
    pub(super) release_key: ReleaseKey,
    pub(super) campaigns: BTreeMap<String, Campaign>,
    pub(super) approvals: Vec<PendingApproval>,
    /// This relay's checkpoints recorded by custodians in the signer's log (kind 11):
    /// `(mirror index of the record, relay log size it covers)`, oldest first.
    pub(super) recorded: Vec<(u64, u64)>,
    /// Resume approvals refused because they were signed before the pause was recorded.
    pub(super) stale: BTreeSet<u64>,
    pub(super) mirror_seen: u64,
    /// The part of the mirror the engine may use: `Some(size)` of its latest checkpoint with a
    /// witness quorum (docs/witness.md §2, the relay as forwarder), `None` the whole mirror (no
    /// witness policy). Plans beyond it wait; deliveries are built against that checkpoint.
    pub(super) published: Option<u64>,
    pub(super) staged: Vec<Vec<u8>>,
    /// Devices waiting to be handed to the transport, in order.
    pub(super) queue: VecDeque<(String, usize)>,
    pub(super) rate: Option<u32>,
    pub(super) stats: Stats,
    /// Problems found in the mirror (a plan that does not verify): shown, never acted on.
    pub problems: Vec<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("log", &self.log)
            .field("campaigns", &self.campaigns.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the relay's state log in `dir`, takes the mirror's plans and approvals up, and
    /// replays the log to get every campaign's state back.
    pub fn open(dir: &Path, origin: &str, release_key: ReleaseKey, mirror: &Vault) -> Result<Self> {
        Self::open_published(dir, origin, release_key, mirror, None)
    }

    /// [`Engine::open`] using the mirror only up to `published` (see
    /// [`Engine::set_published`]).
    pub fn open_published(
        dir: &Path,
        origin: &str,
        release_key: ReleaseKey,
        mirror: &Vault,
        published: Option<u64>,
    ) -> Result<Self> {
        let log = StateLog::open(dir, origin)?;
        let mut engine = Self {
            log,
            release_key,
            campaigns: BTreeMap::new(),
            approvals: Vec::new(),
            recorded: Vec::new(),
            stale: BTreeSet::new(),
            mirror_seen: 0,
            published,
            staged: Vec::new(),
            queue: VecDeque::new(),
            rate: None,
            stats: Stats::default(),
            problems: Vec::new(),
        };
        engine.scan_mirror(mirror)?;
        engine.replay()?;
        engine.requeue(mirror)?;
        Ok(engine)
    }

    /// Hands at most `per_sec` deliveries a second to the transport (AWS IoT Core: 100
    /// publishes a second per connection); `None` hands every queued one at once.
    pub fn set_rate(&mut self, per_sec: Option<u32>) {
        self.rate = per_sec;
    }

    /// Lets the engine use the mirror up to its checkpoint of size `published` (`None`: the whole
    /// mirror). It never shrinks: a smaller size than the one set is ignored. The next
    /// [`Engine::on_mirror`] takes up what it opens.
    pub fn set_published(&mut self, published: Option<u64>) {
        self.published = match (self.published, published) {
            (Some(old), Some(new)) => Some(old.max(new)),
            (_, new) => new,
        };
    }

    /// The limit set by [`Engine::set_published`] (`None`: the whole mirror).
    pub fn published_limit(&self) -> Option<u64> {
        self.published
    }

    /// The size of the mirror the engine uses (see [`Engine::set_published`]).
    pub fn published(&self, mirror: &Vault) -> u64 {
        self.published
            .map_or(mirror.size(), |p| p.min(mirror.size()))
    }

    /// The relay's state log.
    pub fn log(&self) -> &StateLog {
        &self.log
    }

    /// The campaigns.
    pub fn campaigns(&self) -> &BTreeMap<String, Campaign> {
        &self.campaigns
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Deliveries waiting to be handed to the transport.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn campaign(&self, campaign: &str) -> Result<&Campaign> {
        self.campaigns
            .get(campaign)
            .ok_or_else(|| Error::UnknownCampaign(campaign.to_owned()))
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
