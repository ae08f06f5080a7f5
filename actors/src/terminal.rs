//! Attendance terminals (SPEC §8, issue 5): one `TerminalActor` per serial number that
//! checks and ingests punches (stored once per SN, PIN and device-local time) and hands
//! out its durable command queue; the `Terminals` directory that finds or spawns the
//! actors; the command catalogue (which transport carries a command, which commands are
//! destructive and so never re-sent); and the `TerminalStore` port that `Db` implements.
//!
//! Transports (the bridge's HTTP form protocol, native iclock) decode their bytes into
//! [`RawPunch`]es and [`CmdResult`]s and call the directory; they never touch SQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use dashmap::DashMap;
use kameo::prelude::*;
use kioskd_protocol::attendance as wire;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::catalog;
use crate::clock::Clock;
use crate::ports::{StoreError, StoreResult};

/// A registered terminal.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalRecord {
    /// Database id.
    pub id: i64,
    /// Serial number.
    pub sn: String,
    /// SHA-256 (hex) of the bridge token.
    pub token_hash: String,
    /// Operator's name for it.
    pub name: String,
    /// IANA zone of its wall clock.
    pub timezone: String,
    /// Last request from or for it (unix ms).
    pub last_seen_at: Option<i64>,
    /// `bridge` or `iclock`.
    pub last_seen_via: Option<String>,
    /// Roster version last delivered to it.
    pub roster_version: i64,
    /// iclock ATTLOG resume marker.
    pub attlog_stamp: Option<String>,
    /// iclock OPERLOG resume marker.
    pub operlog_stamp: Option<String>,
    /// Last iclock INFO.
    pub info: Option<String>,
    /// Registered at.
    pub created_at: i64,
}

/// A punch as a transport delivered it, not yet checked. Empty `status`/`verify` mean
/// the terminal did not send them (short iclock lines).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPunch {
    /// User PIN.
    pub pin: String,
    /// Device-local `YYYY-MM-DD HH:MM:SS`.
    pub time: String,
    /// In/out state (255: none).
    pub status: String,
    /// Verification method.
    pub verify: String,
    /// Work code.
    pub workcode: String,
    /// Reserved field 1.
    pub reserved1: String,
    /// Reserved field 2.
    pub reserved2: String,
    /// The line or JSON it came from (kept if it must be quarantined); empty: the
    /// fields are shown instead (spares rendering every record of a large batch).
    pub raw: String,
}

impl RawPunch {
    /// What a quarantined punch shows: its raw text, or else its fields.
    pub fn raw_text(&self) -> String {
        if !self.raw.is_empty() {
            return self.raw.clone();
        }
        format!(
            "PIN={}&TIME={}&STATUS={}&VERIFY={}&WORKCODE={}&RESERVED1={}&RESERVED2={}",
            self.pin,
            self.time,
            self.status,
            self.verify,
            self.workcode,
            self.reserved1,
            self.reserved2
        )
    }
}

/// A checked punch, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchRow {
    /// User PIN.
    pub pin: String,
    /// Canonical device-local time.
    pub local_time: String,
    /// The UTC instant (unix ms) of `local_time` in the terminal's zone.
    pub at: i64,
    /// In/out state.
    pub status: i64,
    /// Verification method.
    pub verify: i64,
    /// Work code.
    pub workcode: String,
    /// Reserved 1.
    pub reserved1: String,
    /// Reserved 2.
    pub reserved2: String,
}

/// A line that could not be read, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The raw line (truncated to 500 characters).
    pub raw: String,
    /// Why it was refused.
    pub reason: String,
}

impl Quarantined {
    /// A quarantined line; `raw` is cut to 500 characters so the unique key stays small.
    pub fn new(raw: &str, reason: impl Into<String>) -> Self {
        Self {
            raw: raw.chars().take(500).collect(),
            reason: reason.into(),
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestCounts {
    /// New punches stored.
    pub inserted: u64,
    /// Punches already held.
    pub duplicates: u64,
    /// Lines quarantined.
    pub quarantined: u64,
}

impl IngestCounts {
    /// Lines processed (the iclock `OK:<n>` count).
    pub fn processed(&self) -> u64 {
        self.inserted + self.duplicates + self.quarantined
    }
}

/// Which poll carries a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The bridge's `getCommand` poll (delivered once; the bridge never acknowledges).
    Bridge,
    /// The native iclock `getrequest` poll (acknowledged through `devicecmd`).
    Native,
}

impl Channel {
    /// Database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Bridge => "bridge",
            Channel::Native => "native",
        }
    }
    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bridge" => Some(Channel::Bridge),
            "native" => Some(Channel::Native),
            _ => None,
        }
    }
}

/// A command's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    /// Not delivered yet.
    Pending,
    /// Delivered, no result yet (bridge commands stay here: the bridge never answers).
    Sent,
    /// The terminal reported success.
    Acked,
    /// The terminal reported failure, or it never answered within the attempts.
    Failed,
}

impl CommandState {
    /// Database name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Pending => "pending",
            CommandState::Sent => "sent",
            CommandState::Acked => "acked",
            CommandState::Failed => "failed",
        }
    }
    /// Parses the database name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => CommandState::Pending,
            "sent" => CommandState::Sent,
            "acked" => CommandState::Acked,
            "failed" => CommandState::Failed,
            _ => return None,
        })
    }
}

/// A queued command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRow {
    /// Id (the native wire id is `id * 10 + attempt`).
    pub id: i64,
    /// Terminal.
    pub sn: String,
    /// Catalogue name.
    pub name: String,
    /// Arguments (a JSON object as text).
    pub args: String,
    /// Which poll carries it.
    pub channel: Channel,
    /// State.
    pub state: CommandState,
    /// Destructive: never re-sent automatically.
    pub destructive: bool,
    /// Deliveries so far.
    pub attempts: i64,
    /// Latest attempt's wire id (native).
    pub wire_id: Option<String>,
    /// The terminal's return code.
    pub return_code: Option<i64>,
    /// The terminal's reply text.
    pub result: Option<String>,
    /// Queued at.
    pub created_at: i64,
    /// Last delivered at.
    pub sent_at: Option<i64>,
    /// Result at.
    pub acked_at: Option<i64>,
    /// Which path delivered it last: `bridge`, `native` or `ws`.
    pub via: Option<String>,
    /// When a WebSocket bridge acknowledged receiving the latest delivery.
    pub delivered_at: Option<i64>,
}

/// A command to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    /// Terminal.
    pub sn: String,
    /// Catalogue name.
    pub name: String,
    /// Arguments (a JSON object as text).
    pub args: String,
    /// Which poll carries it.
    pub channel: Channel,
    /// Destructive.
    pub destructive: bool,
}

/// One line of a native `devicecmd` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdResult {
    /// The wire id (`ID=`).
    pub wire_id: String,
    /// `Return=`.
    pub code: i64,
    /// The whole text of this result (first line and any payload lines).
    pub text: String,
}

/// The iclock resume markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampTable {
    /// ATTLOG.
    AttLog,
    /// OPERLOG.
    OperLog,
}

/// Storage for terminals (implemented by the server's `Db`).
#[async_trait]
pub trait TerminalStore: Send + Sync + 'static {
    /// A terminal by serial number.
    async fn terminal(&self, sn: &str) -> StoreResult<Option<TerminalRecord>>;
    /// Records that the terminal was heard.
    async fn touch_terminal(&self, sn: &str, via: &str, now: i64) -> StoreResult<()>;
    /// Stores punches (idempotently) and quarantined lines in one transaction; returns
    /// how many punches were new.
    async fn ingest_punches(
        &self,
        sn: &str,
        source: &str,
        punches: &[PunchRow],
        bad: &[Quarantined],
        now: i64,
    ) -> StoreResult<u64>;
    /// Queues a command.
    async fn enqueue_command(&self, cmd: &NewCommand, now: i64) -> StoreResult<CommandRow>;
    /// In one transaction: queues `updatestd` if the roster moved past the terminal's
    /// version, then marks every pending bridge command (but `reprovision`) sent and
    /// returns them.
    async fn take_bridge_commands(&self, sn: &str, now: i64) -> StoreResult<Vec<CommandRow>>;
    /// Marks a pending `reprovision` sent; true if there was one.
    async fn take_reprovision(&self, sn: &str, now: i64) -> StoreResult<bool>;
    /// Queues `DATA UPDATE/DELETE USERINFO` for every staff change past the terminal's
    /// roster version; returns how many.
    async fn sync_native_roster(&self, sn: &str, now: i64) -> StoreResult<u64>;
    /// In one transaction: fails unanswered non-destructive commands that used up
    /// `max_attempts`, then takes up to `limit` native commands that are pending or
    /// (non-destructive) unanswered for `ack_timeout_ms`, as a new attempt each.
    async fn take_native_commands(
        &self,
        sn: &str,
        now: i64,
        ack_timeout_ms: i64,
        max_attempts: i64,
        limit: i64,
    ) -> StoreResult<Vec<CommandRow>>;
    /// In one transaction, for a bridge connected on `/ws/attendance` since
    /// `redeliver_before`: queues `updatestd` if the roster moved past the terminal's
    /// version; fails WebSocket deliveries made before `redeliver_before` and never
    /// acknowledged after `max_attempts`; then takes up to `limit` commands (both
    /// channels, but `reprovision`) that are pending or were delivered over the WebSocket
    /// before `redeliver_before` (by an earlier connection), unacknowledged and not
    /// destructive, as a new attempt each (`via = 'ws'`).
    async fn take_ws_commands(
        &self,
        sn: &str,
        now: i64,
        redeliver_before: i64,
        max_attempts: i64,
        limit: i64,
    ) -> StoreResult<Vec<CommandRow>>;
    /// The bridge acknowledged receiving `attempt` of a command delivered over the
    /// WebSocket; true if that was news.
    async fn mark_delivered(&self, sn: &str, id: i64, attempt: i64, now: i64) -> StoreResult<bool>;
    /// A command of this terminal.
    async fn command(&self, sn: &str, id: i64) -> StoreResult<Option<CommandRow>>;
    /// Records a result if the command is still `sent` (the first result wins; a failure
    /// of an older attempt than `attempt` is ignored). True if it changed the command.
    #[allow(clippy::too_many_arguments)]
    async fn finish_command(
        &self,
        sn: &str,
        id: i64,
        attempt: i64,
        acked: bool,
        code: i64,
        result: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Saves an iclock resume marker.
    async fn set_terminal_stamp(&self, sn: &str, table: StampTable, stamp: &str)
    -> StoreResult<()>;
    /// Saves the last iclock INFO.
    async fn set_terminal_info(&self, sn: &str, info: &str) -> StoreResult<()>;
    /// Terminals heard since `since`.
    async fn terminals_seen_since(&self, since: i64) -> StoreResult<i64>;
}

// ---- the command catalogue ------------------------------------------------------------

/// What kind of command a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Which poll carries it.
    pub channel: Channel,
    /// Never re-sent automatically.
    pub destructive: bool,
}

/// Bridge-level commands: `cmd_list` keys the deployed bridge understands, plus
/// `reprovision`, which lets the next terminal-specific Update User reply carry users
/// (and so makes the bridge wipe and re-add that terminal: SPEC §8).
pub const BRIDGE_COMMANDS: &[&str] = &["updatestd", "syncAttLog", "getErroLog", "reprovision"];

/// Checks a command name and its arguments; the error says what is wrong.
pub fn command_spec(name: &str, args: &Map<String, Value>) -> Result<CommandSpec, String> {
    let s = |k: &str| args.get(k).and_then(Value::as_str);
    let window = || -> Result<(), String> {
        for k in ["StartTime", "EndTime"] {
            let ok = s(k).is_some_and(|t| parse_local_time(t).is_some());
            if !ok {
                return Err(format!("{name} needs args.{k} as YYYY-MM-DD HH:MM:SS"));
            }
        }
        Ok(())
    };
    let pin = || -> Result<(), String> {
        if s("PIN").is_some_and(valid_pin) {
            Ok(())
        } else {
            Err(format!("{name} needs args.PIN (1-24 letters or digits)"))
        }
    };
    let bridge = CommandSpec {
        channel: Channel::Bridge,
        destructive: false,
    };
    let native = CommandSpec {
        channel: Channel::Native,
        destructive: false,
    };
    let destructive = CommandSpec {
        channel: Channel::Native,
        destructive: true,
    };
    match name {
        "updatestd" | "syncAttLog" | "reprovision" => Ok(bridge),
        "getErroLog" => {
            for k in ["s_timeStamp", "e_timeStamp"] {
                if !args.get(k).is_some_and(Value::is_i64) {
                    return Err(format!("getErroLog needs args.{k} (unix seconds)"));
                }
            }
            Ok(bridge)
        }
        "INFO" | "CHECK" | "LOG" | "RELOAD OPTIONS" => Ok(native),
        "DATA QUERY ATTLOG" | "VERIFY SUM ATTLOG" => window().map(|_| native),
        "DATA UPDATE USERINFO" => {
            pin()?;
            if s("Name").is_none() {
                return Err("DATA UPDATE USERINFO needs args.Name".into());
            }
            Ok(native)
        }
        "DATA DELETE USERINFO" => pin().map(|_| native),
        "SET OPTION" => {
            let key_ok = s("key").is_some_and(|k| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '~')
            });
            if !key_ok || s("value").is_none() {
                return Err("SET OPTION needs args.key (letters, digits) and args.value".into());
            }
            Ok(native)
        }
        "REBOOT" | "CLEAR LOG" | "CLEAR DATA" | "CLEAR ALL USERINFO" => Ok(destructive),
        "clearAll" => Err("kioskd never sends clearAll: it makes the bridge wipe terminals".into()),
        "Shell" | "GetFile" | "PutFile" | "UPGRADE" => Err(format!(
            "{name} is refused: it gives access to the terminal's system"
        )),
        _ => Err(format!(
            "unknown command {name:?}; known: {}, INFO, CHECK, LOG, RELOAD OPTIONS, SET OPTION, DATA QUERY ATTLOG, VERIFY SUM ATTLOG, DATA UPDATE USERINFO, DATA DELETE USERINFO, REBOOT, CLEAR LOG, CLEAR DATA, CLEAR ALL USERINFO",
            BRIDGE_COMMANDS.join(", ")
        )),
    }
}

/// A PIN: 1-24 ASCII letters or digits (leading zeros kept).
pub fn valid_pin(p: &str) -> bool {
    !p.is_empty() && p.len() <= 24 && p.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A value inside a TAB-separated iclock command: TAB, CR and LF would split it.
fn field(v: &str) -> String {
    v.chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect()
}

/// The text of a native command after `C:<id>:`.
pub fn render_native(name: &str, args: &str) -> String {
    let args: Map<String, Value> = serde_json::from_str(args).unwrap_or_default();
    let s = |k: &str| match args.get(k) {
        Some(Value::String(v)) => field(v),
        Some(Value::Null) | None => String::new(),
        Some(v) => field(&v.to_string()),
    };
    match name {
        "DATA UPDATE USERINFO" => format!(
            "DATA UPDATE USERINFO PIN={}\tName={}\tPri={}\tPasswd={}\tCard={}\tGrp={}\tTZ={}",
            s("PIN"),
            s("Name"),
            s("Pri"),
            s("Passwd"),
            s("Card"),
            s("Grp"),
            s("TZ")
        ),
        "DATA DELETE USERINFO" => format!("DATA DELETE USERINFO PIN={}", s("PIN")),
        "DATA QUERY ATTLOG" | "VERIFY SUM ATTLOG" => format!(
            "{name} StartTime={}\tEndTime={}",
            s("StartTime"),
            s("EndTime")
        ),
        "SET OPTION" => format!("SET OPTION {}={}", s("key"), s("value")),
        other => other.to_string(),
    }
}

/// Whether a native result code means the command did what was wanted.
pub fn result_ok(name: &str, code: i64) -> bool {
    // Deleting a user the terminal does not have leaves it as wanted (-10: not found).
    code >= 0 || (name == "DATA DELETE USERINFO" && code == -10)
}

// ---- checking punches -----------------------------------------------------------------

/// Checks raw punches against the terminal's zone: good ones become rows (with their UTC
/// instant), bad ones are quarantined with the reason. `now` is unix ms.
pub fn check_punches(tz: Tz, raw: Vec<RawPunch>, now: i64) -> (Vec<PunchRow>, Vec<Quarantined>) {
    let mut good = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for p in raw {
        match check_punch(tz, &p, now) {
            Ok(row) => good.push(row),
            Err(reason) => bad.push(Quarantined::new(&p.raw_text(), reason)),
        }
    }
    (good, bad)
}

fn check_punch(tz: Tz, p: &RawPunch, now: i64) -> Result<PunchRow, String> {
    if !valid_pin(&p.pin) {
        return Err("PIN must be 1-24 letters or digits".into());
    }
    let naive = parse_local_time(p.time.trim())
        .ok_or_else(|| format!("time {:?} is not YYYY-MM-DD HH:MM:SS", p.time))?;
    let at = tz
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| format!("time {} does not exist in {tz}", p.time))?
        .timestamp_millis();
    // A terminal whose clock battery failed reports 2000 or 1970: keep the line for a
    // human, never a punch at a made-up time.
    if naive.and_utc().timestamp() < 978_307_200 {
        return Err("time before 2001 (terminal clock reset?)".into());
    }
    if at > now + 86_400_000 {
        return Err("time more than a day in the future".into());
    }
    let int = |v: &str, default: i64, what: &str| -> Result<i64, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(default);
        }
        v.parse::<i64>()
            .ok()
            .filter(|n| (0..=1_000_000).contains(n))
            .ok_or_else(|| format!("{what} {v:?} is not a small number"))
    };
    let text = |v: &str, what: &str| -> Result<String, String> {
        if v.chars().count() > 64 {
            Err(format!("{what} longer than 64 characters"))
        } else {
            Ok(v.to_string())
        }
    };
    Ok(PunchRow {
        pin: p.pin.clone(),
        // parse_local_time accepts the canonical form only, so the text is the key.
        local_time: p.time.trim().to_string(),
        at,
        status: int(&p.status, 255, "STATUS")?,
        verify: int(&p.verify, 0, "VERIFY")?,
        workcode: text(&p.workcode, "WORKCODE")?,
        reserved1: text(&p.reserved1, "RESERVED1")?,
        reserved2: text(&p.reserved2, "RESERVED2")?,
    })
}

/// Parses exactly `YYYY-MM-DD HH:MM:SS` (zero-padded). Hand-written: a nightly sync
/// parses tens of thousands of these, and chrono's strftime parser re-reads the format
/// for each.
pub fn parse_local_time(t: &str) -> Option<NaiveDateTime> {
    let b = t.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r.clone()].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

/// Parses a zone name.
pub fn parse_zone(name: &str) -> Option<Tz> {
    name.parse().ok()
}

// ---- the actor --------------------------------------------------------------------------

/// Timing and limits of the terminal actors.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// A native command unanswered this long is sent again (non-destructive only).
    pub ack_timeout_ms: i64,
    /// Deliveries of a native command before it is failed (at most 9: the attempt is the
    /// last digit of the wire id).
    pub max_attempts: i64,
    /// Commands per native poll (ZKTeco's reference server sends at most 200).
    pub max_per_poll: i64,
    /// Bound on every ask (a 50,000-record sync must fit).
    pub ask_timeout: Duration,
    /// "Seen recently" window for the gauge and the ops listing.
    pub seen_window_ms: i64,
    /// How often `last_seen_at` is written at most per terminal.
    pub touch_every_ms: i64,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 60_000,
            max_attempts: 5,
            max_per_poll: 200,
            ask_timeout: Duration::from_secs(120),
            seen_window_ms: 10 * 60_000,
            touch_every_ms: 5_000,
        }
    }
}

struct DirInner {
    store: Arc<dyn TerminalStore>,
    clock: Clock,
    cfg: TerminalConfig,
    actors: DashMap<String, ActorRef<TerminalActor>>,
}

/// One terminal: serialises its ingests, polls and results.
pub struct TerminalActor {
    rec: TerminalRecord,
    tz: Tz,
    inner: Arc<DirInner>,
    last_touch: Option<(i64, &'static str)>,
    /// The `/ws/attendance` connection serving this terminal, if any.
    ws: Option<WsLink>,
    /// When it attached (unix ms): unacknowledged deliveries before it are re-sent.
    ws_since: i64,
    /// The last push stopped at its limit: push again when the bridge answers.
    ws_backlog: bool,
}

/// Spawn arguments.
pub struct TerminalArgs {
    rec: TerminalRecord,
    inner: Arc<DirInner>,
}

impl Actor for TerminalActor {
    type Args = TerminalArgs;
    type Error = kameo::error::Infallible;

    fn name() -> &'static str {
        "Terminal"
    }

    async fn on_start(args: Self::Args, _me: ActorRef<Self>) -> Result<Self, Self::Error> {
        // Registration validates zones; a bad one in the table must not take punches
        // down, so fall back to UTC loudly.
        let tz = parse_zone(&args.rec.timezone).unwrap_or_else(|| {
            tracing::error!(sn = %args.rec.sn, zone = %args.rec.timezone, "bad terminal zone; using UTC");
            chrono_tz::UTC
        });
        Ok(Self {
            tz,
            rec: args.rec,
            inner: args.inner,
            last_touch: None,
            ws: None,
            ws_since: 0,
            ws_backlog: false,
        })
    }
}

impl TerminalActor {
    async fn touch(&mut self, via: &'static str) -> StoreResult<()> {
        let now = self.inner.clock.now_ms();
        if let Some((at, v)) = self.last_touch
            && v == via
            && now - at < self.inner.cfg.touch_every_ms
        {
            return Ok(());
        }
        self.inner
            .store
            .touch_terminal(&self.rec.sn, via, now)
            .await?;
        self.last_touch = Some((now, via));
        Ok(())
    }
}

/// Stores punches; replies after commit.
pub struct Ingest {
    /// `bridge-new`, `bridge-sync` or `iclock`.
    pub source: &'static str,
    /// The punches as delivered.
    pub punches: Vec<RawPunch>,
    /// Lines the transport could not even split.
    pub bad: Vec<Quarantined>,
}

impl Message<Ingest> for TerminalActor {
    type Reply = Result<IngestCounts, StoreError>;

    async fn handle(&mut self, m: Ingest, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let now = self.inner.clock.now_ms();
        let (rows, mut bad) = check_punches(self.tz, m.punches, now);
        bad.extend(m.bad);
        let inserted = self
            .inner
            .store
            .ingest_punches(&self.rec.sn, m.source, &rows, &bad, now)
            .await
            .inspect_err(|_| {
                metrics::counter!(catalog::STORE_ERRORS, "op" => "ingest_punches").increment(1);
            })?;
        let counts = IngestCounts {
            inserted,
            duplicates: rows.len() as u64 - inserted,
            quarantined: bad.len() as u64,
        };
        metrics::counter!(catalog::ATT_PUNCHES, "source" => m.source).increment(inserted);
        metrics::counter!(catalog::ATT_DUPLICATES, "source" => m.source)
            .increment(counts.duplicates);
        metrics::counter!(catalog::ATT_QUARANTINED, "source" => m.source)
            .increment(counts.quarantined);
        let via = if m.source == "iclock" {
            "iclock"
        } else {
            "bridge"
        };
        // The punches are committed: failing the reply now would only make the sender
        // re-send a batch that is already stored.
        if let Err(e) = self.touch(via).await {
            tracing::warn!(sn = %self.rec.sn, error = %e, "could not record last seen");
        }
        Ok(counts)
    }
}

/// The bridge's `getCommand` poll: the commands to put in `cmd_list`, each delivered once.
pub struct BridgePoll;

impl Message<BridgePoll> for TerminalActor {
    type Reply = Result<Vec<CommandRow>, StoreError>;

    async fn handle(&mut self, _: BridgePoll, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.touch("bridge").await?;
        let now = self.inner.clock.now_ms();
        let rows = self
            .inner
            .store
            .take_bridge_commands(&self.rec.sn, now)
            .await?;
        for r in &rows {
            metrics::counter!(catalog::ATT_COMMANDS, "outcome" => "sent").increment(1);
            // The bridge never answers: delivery is as far as kioskd can see.
            metrics::histogram!(catalog::ATT_COMMAND_LATENCY, "channel" => "bridge")
                .record((now - r.created_at).max(0) as f64 / 1000.0);
        }
        Ok(rows)
    }
}

/// A terminal-specific Update User request: true if an operator asked to re-provision
/// this terminal (only then may the reply carry users).
pub struct TakeReprovision;

impl Message<TakeReprovision> for TerminalActor {
    type Reply = Result<bool, StoreError>;

    async fn handle(
        &mut self,
        _: TakeReprovision,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch("bridge").await?;
        let now = self.inner.clock.now_ms();
        self.inner.store.take_reprovision(&self.rec.sn, now).await
    }
}

/// A native command ready for the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeCommand {
    /// `C:<wire_id>:`.
    pub wire_id: String,
    /// The command text.
    pub text: String,
}

/// The native `getrequest` poll.
pub struct NativePoll {
    /// The `INFO=` parameter, if sent.
    pub info: Option<String>,
}

impl Message<NativePoll> for TerminalActor {
    type Reply = Result<Vec<NativeCommand>, StoreError>;

    async fn handle(&mut self, m: NativePoll, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.touch("iclock").await?;
        let now = self.inner.clock.now_ms();
        let store = &self.inner.store;
        if let Some(info) = m.info {
            store.set_terminal_info(&self.rec.sn, &info).await?;
        }
        store.sync_native_roster(&self.rec.sn, now).await?;
        let cfg = &self.inner.cfg;
        let rows = store
            .take_native_commands(
                &self.rec.sn,
                now,
                cfg.ack_timeout_ms,
                cfg.max_attempts,
                cfg.max_per_poll,
            )
            .await?;
        let mut out: Vec<NativeCommand> = rows
            .iter()
            .map(|r| {
                metrics::counter!(catalog::ATT_COMMANDS, "outcome" => "sent").increment(1);
                NativeCommand {
                    wire_id: r.wire_id.clone().unwrap_or_default(),
                    text: render_native(&r.name, &r.args),
                }
            })
            .collect();
        // The firmware runs a batch in order; a reboot mid-batch would lose the rest.
        out.sort_by_key(|c| c.text == "REBOOT");
        Ok(out)
    }
}

/// What a `devicecmd` post did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResultCounts {
    /// Results that completed a command.
    pub applied: u64,
    /// Duplicates, stale attempts or unknown ids (ignored).
    pub ignored: u64,
}

/// Native `devicecmd` results.
pub struct NativeResults(pub Vec<CmdResult>);

impl Message<NativeResults> for TerminalActor {
    type Reply = Result<ResultCounts, StoreError>;

    async fn handle(
        &mut self,
        m: NativeResults,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.touch("iclock").await?;
        let now = self.inner.clock.now_ms();
        let mut counts = ResultCounts::default();
        for r in m.0 {
            let Some(wire) = r.wire_id.parse::<i64>().ok().filter(|w| *w > 0) else {
                counts.ignored += 1;
                continue;
            };
            let (id, attempt) = (wire / 10, wire % 10);
            let Some(cmd) = self.inner.store.command(&self.rec.sn, id).await? else {
                counts.ignored += 1;
                continue;
            };
            let ok = result_ok(&cmd.name, r.code);
            let text: String = r.text.chars().take(4000).collect();
            if self
                .inner
                .store
                .finish_command(&self.rec.sn, id, attempt, ok, r.code, &text, now)
                .await?
            {
                counts.applied += 1;
                let outcome = if ok { "acked" } else { "failed" };
                metrics::counter!(catalog::ATT_COMMANDS, "outcome" => outcome).increment(1);
                metrics::histogram!(catalog::ATT_COMMAND_LATENCY, "channel" => "native")
                    .record((now - cmd.created_at).max(0) as f64 / 1000.0);
            } else {
                counts.ignored += 1;
            }
        }
        Ok(counts)
    }
}

/// Records that the terminal was heard (handshake, ping) and returns its record.
pub struct Heard(pub &'static str);

impl Message<Heard> for TerminalActor {
    type Reply = Result<TerminalRecord, StoreError>;

    async fn handle(&mut self, m: Heard, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.touch(m.0).await?;
        // Stamps change behind the actor's back (set_stamp): read them fresh.
        Ok(self
            .inner
            .store
            .terminal(&self.rec.sn)
            .await?
            .unwrap_or_else(|| self.rec.clone()))
    }
}

/// Saves an iclock resume marker after an accepted upload.
pub struct SetStamp(pub StampTable, pub String);

impl Message<SetStamp> for TerminalActor {
    type Reply = Result<(), StoreError>;

    async fn handle(&mut self, m: SetStamp, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.inner
            .store
            .set_terminal_stamp(&self.rec.sn, m.0, &m.1)
            .await
    }
}

// ---- a bridge on /ws/attendance -----------------------------------------------------------

/// A `/ws/attendance` connection as the terminals it serves see it: its writer's bounded
/// queue (actors only `try_send`) and a way to close it. Cheap to clone: one connection
/// serves several terminals.
#[derive(Clone)]
pub struct WsLink {
    /// Connection id (unique per process).
    pub id: u64,
    /// Frames to the connection's writer task.
    pub tx: mpsc::Sender<Arc<wire::ServerMessage>>,
    kick: Arc<Mutex<Option<oneshot::Sender<u16>>>>,
}

impl WsLink {
    /// A link; `kick` tells the writer to close with a code.
    pub fn new(
        id: u64,
        tx: mpsc::Sender<Arc<wire::ServerMessage>>,
        kick: oneshot::Sender<u16>,
    ) -> Self {
        Self {
            id,
            tx,
            kick: Arc::new(Mutex::new(Some(kick))),
        }
    }

    /// Closes the connection with `code` (the first close wins).
    pub fn close(&self, code: u16) {
        if let Some(k) = self.kick.lock().ok().and_then(|mut k| k.take()) {
            let _ = k.send(code);
        }
    }
}

impl TerminalActor {
    /// Pushes what is due to the connected bridge, never waiting on its socket: at most
    /// as many commands as its queue has room for, less one slot for the reader's
    /// answers (the rest stay pending and follow when the bridge answers); a queue that
    /// is full closes the connection as a slow consumer.
    async fn push(&mut self) -> StoreResult<usize> {
        let Some(link) = self.ws.clone() else {
            return Ok(0);
        };
        if link.tx.is_closed() {
            self.ws = None;
            return Ok(0);
        }
        let room = link.tx.capacity() as i64;
        if room == 0 {
            metrics::counter!(catalog::WS_SLOW_CONSUMERS).increment(1);
            link.close(kioskd_protocol::ws::close::SLOW_CONSUMER);
            self.ws = None;
            return Ok(0);
        }
        let now = self.inner.clock.now_ms();
        let cfg = &self.inner.cfg;
        // One slot stays free for the reader's answer (`recorded`, `error`).
        let limit = (room - 1).min(cfg.max_per_poll);
        if limit == 0 {
            self.ws_backlog = true;
            return Ok(0);
        }
        let rows = self
            .inner
            .store
            .take_ws_commands(&self.rec.sn, now, self.ws_since, cfg.max_attempts, limit)
            .await?;
        // More may be waiting: the bridge's next answer (it acknowledges every command)
        // makes room and pushes again.
        self.ws_backlog = rows.len() as i64 >= limit;
        let mut pushed = 0;
        for r in rows {
            let frame = wire::ServerMessage::Command(wire::Command {
                sn: r.sn.clone(),
                id: r.id,
                attempt: r.attempts,
                text: (r.channel == Channel::Native).then(|| render_native(&r.name, &r.args)),
                args: serde_json::from_str(&r.args).unwrap_or_default(),
                name: r.name,
                destructive: r.destructive,
            });
            if link.tx.try_send(Arc::new(frame)).is_err() {
                // Taken but not queued: a non-destructive one goes again on reconnect.
                metrics::counter!(catalog::WS_SLOW_CONSUMERS).increment(1);
                link.close(kioskd_protocol::ws::close::SLOW_CONSUMER);
                self.ws = None;
                break;
            }
            metrics::counter!(catalog::ATT_COMMANDS, "outcome" => "sent").increment(1);
            pushed += 1;
        }
        Ok(pushed)
    }
}

/// A bridge connected on `/ws/attendance` serves this terminal from now on (a previous
/// connection is closed as replaced); what is pending, and what an earlier connection
/// never acknowledged (non-destructive only), is pushed at once. Replies with the number
/// of commands pushed.
pub struct WsAttach(pub WsLink);

impl Message<WsAttach> for TerminalActor {
    type Reply = Result<usize, StoreError>;

    async fn handle(&mut self, m: WsAttach, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let new_id = m.0.id;
        // The newer connection serves the terminal, whichever attaches last: connection
        // ids grow, and an older connection can finish attaching after a newer one did
        // (its hello is answered before its terminals are attached).
        if self.ws.as_ref().is_some_and(|cur| cur.id > new_id) {
            m.0.close(kioskd_protocol::ws::close::REPLACED);
            return Ok(0);
        }
        if let Some(old) = self.ws.replace(m.0)
            && old.id != new_id
        {
            old.close(kioskd_protocol::ws::close::REPLACED);
        }
        self.ws_since = self.inner.clock.now_ms();
        self.ws_backlog = false;
        self.touch("bridge").await?;
        self.push().await
    }
}

/// The connection `0` is gone.
pub struct WsDetach(pub u64);

impl Message<WsDetach> for TerminalActor {
    type Reply = ();

    async fn handle(&mut self, m: WsDetach, _: &mut Context<Self, Self::Reply>) {
        if self.ws.as_ref().is_some_and(|l| l.id == m.0) {
            self.ws = None;
        }
    }
}

/// Something was queued: push it if a bridge is connected. Never fails the actor
/// (a storage error leaves the command pending for the next push or reconnect).
pub struct WsPush;

impl Message<WsPush> for TerminalActor {
    type Reply = ();

    async fn handle(&mut self, _: WsPush, _: &mut Context<Self, Self::Reply>) {
        if let Err(e) = self.push().await {
            tracing::warn!(sn = %self.rec.sn, error = %e, "could not push commands");
        }
    }
}

/// The connected bridge is alive (it answers pings): counts as hearing the terminal.
pub struct WsAlive;

impl Message<WsAlive> for TerminalActor {
    type Reply = ();

    async fn handle(&mut self, _: WsAlive, _: &mut Context<Self, Self::Reply>) {
        if let Err(e) = self.touch("bridge").await {
            tracing::warn!(sn = %self.rec.sn, error = %e, "could not record last seen");
        }
    }
}

/// What an `ack` or `result` from the bridge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOutcome {
    /// Stored; the command's state now (`sent`, `acked`, `failed`).
    Recorded(CommandState),
    /// A duplicate or stale answer: nothing changed.
    Ignored,
    /// No command with that id was delivered to this terminal over the WebSocket.
    Unknown,
}

/// The bridge's `ack` (`result: None`) or `result` (`Some((code, text))`) for an attempt.
pub struct WsAnswer {
    /// Command id.
    pub id: i64,
    /// Attempt.
    pub attempt: i64,
    /// Return code and text, for a result.
    pub result: Option<(i64, String)>,
}

impl Message<WsAnswer> for TerminalActor {
    type Reply = Result<WsOutcome, StoreError>;

    async fn handle(&mut self, m: WsAnswer, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.touch("bridge").await?;
        let now = self.inner.clock.now_ms();
        let store = &self.inner.store;
        let Some(cmd) = store.command(&self.rec.sn, m.id).await? else {
            return Ok(WsOutcome::Unknown);
        };
        if cmd.via.as_deref() != Some("ws") || m.attempt < 1 || m.attempt > cmd.attempts {
            return Ok(WsOutcome::Unknown);
        }
        // A result implies the command arrived.
        let news = store
            .mark_delivered(&self.rec.sn, m.id, m.attempt, now)
            .await?;
        let changed = match &m.result {
            None => news,
            Some((code, text)) => {
                let ok = result_ok(&cmd.name, *code);
                let text: String = text.chars().take(4000).collect();
                let done = store
                    .finish_command(&self.rec.sn, m.id, m.attempt, ok, *code, &text, now)
                    .await?;
                if done {
                    let outcome = if ok { "acked" } else { "failed" };
                    metrics::counter!(catalog::ATT_COMMANDS, "outcome" => outcome).increment(1);
                    metrics::histogram!(catalog::ATT_COMMAND_LATENCY, "channel" => "ws")
                        .record((now - cmd.created_at).max(0) as f64 / 1000.0);
                }
                done
            }
        };
        if self.ws_backlog
            && let Err(e) = self.push().await
        {
            tracing::warn!(sn = %self.rec.sn, error = %e, "could not push commands");
        }
        if !changed {
            return Ok(WsOutcome::Ignored);
        }
        let state = self
            .inner
            .store
            .command(&self.rec.sn, m.id)
            .await?
            .map_or(cmd.state, |c| c.state);
        Ok(WsOutcome::Recorded(state))
    }
}

// ---- the directory ----------------------------------------------------------------------

/// A failed terminal operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermError {
    /// No terminal with that SN is registered.
    #[error("no such terminal")]
    NoSuchTerminal,
    /// The command is unknown, refused or has bad arguments.
    #[error("{0}")]
    BadCommand(String),
    /// Storage failed.
    #[error("{0}")]
    Store(StoreError),
    /// The actor did not answer in time or died.
    #[error("terminal actor unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for TermError {
    fn from(e: StoreError) -> Self {
        TermError::Store(e)
    }
}

fn reply<T, M>(r: Result<T, SendError<M, StoreError>>) -> Result<T, TermError> {
    match r {
        Ok(v) => Ok(v),
        Err(SendError::HandlerError(e)) => Err(TermError::Store(e)),
        Err(e) => Err(TermError::Unavailable(
            format!("{e:?}").chars().take(200).collect(),
        )),
    }
}

/// Finds or spawns terminal actors by serial number (cheap to clone).
#[derive(Clone)]
pub struct Terminals {
    inner: Arc<DirInner>,
}

impl Terminals {
    /// Live terminal actors and their mailboxes, for the metric sampler.
    pub fn actor_stats(&self) -> crate::coordinator::MailboxStats {
        let mut st = crate::coordinator::MailboxStats::default();
        for e in self.inner.actors.iter() {
            st.add(e.value().mailbox_sender());
        }
        st
    }

    /// A directory over `store`. Spawns the task that keeps the "terminals seen" gauge.
    pub fn new(store: Arc<dyn TerminalStore>, clock: Clock, cfg: TerminalConfig) -> Self {
        let inner = Arc::new(DirInner {
            store,
            clock,
            cfg,
            actors: DashMap::new(),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let since = inner.clock.now_ms() - inner.cfg.seen_window_ms;
                if let Ok(n) = inner.store.terminals_seen_since(since).await {
                    metrics::gauge!(catalog::ATT_TERMINALS_SEEN).set(n as f64);
                }
                drop(inner);
                tokio::time::sleep(Duration::from_secs(15)).await;
            }
        });
        Self { inner }
    }

    /// The settings.
    pub fn config(&self) -> &TerminalConfig {
        &self.inner.cfg
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    /// Finds or spawns the actor of a registered terminal.
    pub async fn get(&self, sn: &str) -> Result<ActorRef<TerminalActor>, TermError> {
        if let Some(a) = self.inner.actors.get(sn) {
            return Ok(a.clone());
        }
        let rec = self
            .inner
            .store
            .terminal(sn)
            .await?
            .ok_or(TermError::NoSuchTerminal)?;
        let inner = self.inner.clone();
        Ok(self
            .inner
            .actors
            .entry(rec.sn.clone())
            .or_insert_with(|| TerminalActor::spawn(TerminalArgs { rec, inner }))
            .clone())
    }

    /// Checks and stores punches; answers after commit.
    pub async fn ingest(
        &self,
        sn: &str,
        source: &'static str,
        punches: Vec<RawPunch>,
        bad: Vec<Quarantined>,
    ) -> Result<IngestCounts, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(Ingest {
                source,
                punches,
                bad,
            })
            .reply_timeout(self.inner.cfg.ask_timeout)
            .await,
        )
    }

    /// The bridge's `getCommand` poll.
    pub async fn bridge_poll(&self, sn: &str) -> Result<Vec<CommandRow>, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(BridgePoll)
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// A terminal-specific Update User request: may its reply carry users?
    pub async fn take_reprovision(&self, sn: &str) -> Result<bool, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(TakeReprovision)
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// The native `getrequest` poll.
    pub async fn native_poll(
        &self,
        sn: &str,
        info: Option<String>,
    ) -> Result<Vec<NativeCommand>, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(NativePoll { info })
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// Native `devicecmd` results.
    pub async fn native_results(
        &self,
        sn: &str,
        results: Vec<CmdResult>,
    ) -> Result<ResultCounts, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(NativeResults(results))
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// Records that the terminal was heard; returns its current record.
    pub async fn heard(&self, sn: &str, via: &'static str) -> Result<TerminalRecord, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(Heard(via))
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// Saves an iclock resume marker.
    pub async fn set_stamp(
        &self,
        sn: &str,
        table: StampTable,
        stamp: String,
    ) -> Result<(), TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(SetStamp(table, stamp))
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// Queues an operator's command after checking it against the catalogue.
    pub async fn enqueue(
        &self,
        sn: &str,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<CommandRow, TermError> {
        let spec = command_spec(name, &args).map_err(TermError::BadCommand)?;
        if self.inner.store.terminal(sn).await?.is_none() {
            return Err(TermError::NoSuchTerminal);
        }
        let cmd = NewCommand {
            sn: sn.to_string(),
            name: name.to_string(),
            args: Value::Object(args).to_string(),
            channel: spec.channel,
            destructive: spec.destructive,
        };
        let row = self
            .inner
            .store
            .enqueue_command(&cmd, self.inner.clock.now_ms())
            .await?;
        self.push(sn);
        Ok(row)
    }

    /// Tells a live terminal actor to push what is queued to its connected bridge (if
    /// any); never waits.
    pub fn push(&self, sn: &str) {
        if let Some(a) = self.inner.actors.get(sn) {
            let _ = a.tell(WsPush).try_send();
        }
    }

    /// The roster changed: bridges connected on `/ws/attendance` get `updatestd` now.
    pub fn roster_changed(&self) {
        for a in self.inner.actors.iter() {
            let _ = a.value().tell(WsPush).try_send();
        }
    }

    /// A `/ws/attendance` connection now serves `sn`; pushes what is due. Returns the
    /// number of commands pushed.
    pub async fn ws_attach(&self, sn: &str, link: WsLink) -> Result<usize, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(WsAttach(link))
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// The connection `conn_id` no longer serves `sn`.
    pub fn ws_detach(&self, sn: &str, conn_id: u64) {
        if let Some(a) = self.inner.actors.get(sn) {
            let _ = a.tell(WsDetach(conn_id)).try_send();
        }
    }

    /// The bridge serving `sn` on a WebSocket is alive; never waits.
    pub fn ws_alive(&self, sn: &str) {
        if let Some(a) = self.inner.actors.get(sn) {
            let _ = a.tell(WsAlive).try_send();
        }
    }

    /// The bridge's `ack` or `result` for a command of `sn`.
    pub async fn ws_answer(&self, sn: &str, answer: WsAnswer) -> Result<WsOutcome, TermError> {
        let a = self.get(sn).await?;
        reply(
            a.ask(answer)
                .reply_timeout(self.inner.cfg.ask_timeout)
                .await,
        )
    }

    /// Whether a terminal has a live actor (tests).
    pub fn is_live(&self, sn: &str) -> bool {
        self.inner.actors.contains_key(sn)
    }

    /// Stops every actor (graceful shutdown); everything they own is in the database.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self
            .inner
            .actors
            .iter()
            .map(|e| e.value().clone())
            .collect();
        self.inner.actors.clear();
        for a in all {
            let _ = a.stop_gracefully().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pin: &str, time: &str) -> RawPunch {
        RawPunch {
            pin: pin.into(),
            time: time.into(),
            status: "255".into(),
            verify: "2".into(),
            raw: format!("{pin}\t{time}"),
            ..Default::default()
        }
    }

    #[test]
    fn punches_get_their_utc_instant_from_the_zone() {
        let tz = parse_zone("Asia/Shanghai").unwrap();
        let now = 1_800_000_000_000;
        let (good, bad) = check_punches(tz, vec![raw("101010101010", "2017-08-03 11:30:28")], now);
        assert!(bad.is_empty());
        // 11:30:28 in Shanghai is 03:30:28 UTC.
        assert_eq!(good[0].at, 1_501_731_028_000);
        assert_eq!(good[0].local_time, "2017-08-03 11:30:28");
        assert_eq!((good[0].status, good[0].verify), (255, 2));
        let (good, _) = check_punches(chrono_tz::UTC, vec![raw("1", "2017-08-03 11:30:28")], now);
        assert_eq!(good[0].at, 1_501_759_828_000);
    }

    #[test]
    fn bad_lines_are_quarantined_with_a_reason() {
        let tz = chrono_tz::Asia::Shanghai;
        let now = 1_800_000_000_000; // 2027-01-15
        let mut future = raw("1", "2027-01-17 00:00:00");
        future.raw = "future".into();
        let mut status = raw("1", "2026-01-01 00:00:00");
        status.status = "x".into();
        let (good, bad) = check_punches(
            tz,
            vec![
                raw("abc", "not-a-date"),
                raw("", "2026-01-01 00:00:00"),
                raw("1", "2000-01-01 00:00:00"),
                raw("1", "0000-00-00 00:00:00"),
                future,
                status,
                raw("0042", "2026-01-01 00:00:00"),
            ],
            now,
        );
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].pin, "0042", "leading zeros kept");
        let reasons: Vec<_> = bad.iter().map(|q| q.reason.as_str()).collect();
        assert!(reasons[0].contains("not YYYY-MM-DD"), "{reasons:?}");
        assert!(reasons[1].contains("PIN"));
        assert!(reasons[2].contains("before 2001"));
        assert!(reasons[3].contains("not YYYY-MM-DD"));
        assert!(reasons[4].contains("future"));
        assert!(reasons[5].contains("STATUS"));
        assert_eq!(bad[4].raw, "future");
    }

    #[test]
    fn local_times_parse_strictly() {
        assert!(parse_local_time("2017-08-03 11:30:28").is_some());
        for bad in [
            "2017-8-03 11:30:28",
            "2017-02-30 11:30:28",
            "2017-08-03 24:00:00",
            "2017-08-03T11:30:28",
            "0000-00-00 00:00:00",
            "2017-08-03 11:30:2x",
            "２０17-08-03 11:30:2",
            "",
        ] {
            assert!(parse_local_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_catalogue_refuses_clear_all_and_shell_and_marks_destructive_commands() {
        let none = Map::new();
        assert!(
            command_spec("clearAll", &none)
                .unwrap_err()
                .contains("never")
        );
        assert!(command_spec("Shell", &none).is_err());
        assert!(command_spec("nonsense", &none).is_err());
        assert!(command_spec("REBOOT", &none).unwrap().destructive);
        assert!(command_spec("CLEAR LOG", &none).unwrap().destructive);
        assert_eq!(
            command_spec("updatestd", &none).unwrap().channel,
            Channel::Bridge
        );
        assert!(command_spec("getErroLog", &none).is_err());
        let mut a = Map::new();
        a.insert("s_timeStamp".into(), 1.into());
        a.insert("e_timeStamp".into(), 2.into());
        assert!(command_spec("getErroLog", &a).is_ok());
        assert!(command_spec("DATA QUERY ATTLOG", &none).is_err());
        assert!(command_spec("DATA DELETE USERINFO", &none).is_err());
    }

    #[test]
    fn native_commands_render_as_the_reference_shows() {
        let args = r#"{"PIN":"1001","Name":"Alice","Pri":"0","Passwd":"","Card":"","Grp":"1","TZ":"0000000000000000"}"#;
        assert_eq!(
            render_native("DATA UPDATE USERINFO", args),
            "DATA UPDATE USERINFO PIN=1001\tName=Alice\tPri=0\tPasswd=\tCard=\tGrp=1\tTZ=0000000000000000"
        );
        assert_eq!(
            render_native("DATA DELETE USERINFO", r#"{"PIN":"1002"}"#),
            "DATA DELETE USERINFO PIN=1002"
        );
        assert_eq!(
            render_native(
                "DATA QUERY ATTLOG",
                r#"{"StartTime":"2026-08-01 00:00:00","EndTime":"2026-08-20 23:59:59"}"#
            ),
            "DATA QUERY ATTLOG StartTime=2026-08-01 00:00:00\tEndTime=2026-08-20 23:59:59"
        );
        // A name cannot smuggle a second field or command in.
        assert_eq!(
            render_native(
                "DATA UPDATE USERINFO",
                r#"{"PIN":"1","Name":"a\tPri=14\nC:1:REBOOT"}"#
            )
            .matches('\t')
            .count(),
            6
        );
        assert!(result_ok("DATA DELETE USERINFO", -10));
        assert!(!result_ok("DATA UPDATE USERINFO", -10));
        assert!(result_ok("INFO", 0));
    }
}
