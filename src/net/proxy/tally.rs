//! What the proxy saw: the counts and lists behind `Summary`, and the JSON decision log. It
//! must stay bounded (an agent can ask for any number of distinct names) and a log that cannot
//! be written must never stop the proxying.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Summary;

/// Distinct entries kept in each of `requested` and `denied`; past it only counts grow.
const MAX_TRACKED: usize = 10_000;

/// One decision, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub host: String,
    pub port: u16,
    pub method: String,
    /// The policy's verdict (a name that then failed to resolve was still allowed).
    pub allowed: bool,
    pub reason: String,
    pub up: u64,
    pub down: u64,
}

impl Entry {
    pub fn new(host: &str, port: u16, method: &str, allowed: bool, reason: String) -> Entry {
        Entry {
            host: host.to_owned(),
            port,
            method: method.to_owned(),
            allowed,
            reason,
            up: 0,
            down: 0,
        }
    }

    /// The log line, without its newline; `time` in unix seconds.
    pub fn json(&self, time: f64) -> String {
        serde_json::json!({
            "time": time,
            "host": self.host,
            "port": self.port,
            "method": self.method,
            "allowed": self.allowed,
            "reason": self.reason,
            "bytes_up": self.up,
            "bytes_down": self.down,
        })
        .to_string()
    }
}

#[derive(Default)]
pub(super) struct Tally {
    requested: BTreeSet<(String, u16)>,
    denied: BTreeMap<(String, u16, String), u64>,
    allowed: u64,
    failed: u64,
    untracked: u64,
    log: Option<File>,
}

/// The tally is only ever updated whole, so a panic elsewhere cannot leave it half-written:
/// a poisoned lock is still safe to use.
pub(super) fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tally {
    pub fn new(log: Option<File>) -> Tally {
        Tally {
            log,
            ..Tally::default()
        }
    }

    pub fn request(&mut self, host: &str, port: u16) {
        let key = (host.to_owned(), port);
        if self.requested.len() < MAX_TRACKED || self.requested.contains(&key) {
            self.requested.insert(key);
        } else {
            self.untracked += 1;
        }
    }

    /// A request that ends without a connection: denied by policy, or allowed but failed.
    pub fn refused(&mut self, entry: Entry) {
        if entry.allowed {
            self.failed += 1;
        } else {
            let key = (entry.host.clone(), entry.port, entry.reason.clone());
            let room = self.denied.len() < MAX_TRACKED;
            match self.denied.get_mut(&key) {
                Some(n) => *n += 1,
                None if room => {
                    self.denied.insert(key, 1);
                }
                None => self.untracked += 1,
            }
        }
        self.log(&entry);
    }

    pub fn connected(&mut self) {
        self.allowed += 1;
    }

    pub fn log(&mut self, entry: &Entry) {
        let Some(file) = &mut self.log else { return };
        let mut line = entry.json(now());
        line.push('\n');
        // One write per line, so lines stay whole in an O_APPEND file; a full disk or a
        // closed file loses log lines, never connections.
        let _ = file.write_all(line.as_bytes());
    }

    pub fn summary(&self) -> Summary {
        Summary {
            requested: self.requested.iter().cloned().collect(),
            denied: self
                .denied
                .iter()
                .map(|((h, p, r), n)| (h.clone(), *p, r.clone(), *n))
                .collect(),
            allowed: self.allowed,
            failed: self.failed,
            untracked: self.untracked,
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

/// An open tunnel's log line, written when the tunnel ends, however it ends: also when `stop`
/// drops the task mid-copy, which is why this is a `Drop` and not a call after the copy.
pub(super) struct Record {
    tally: Arc<Mutex<Tally>>,
    entry: Entry,
    pub up: AtomicU64,
    pub down: AtomicU64,
}

impl Record {
    pub fn new(tally: Arc<Mutex<Tally>>, entry: Entry) -> Record {
        Record {
            tally,
            entry,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    pub fn add_up(&self, n: usize) {
        self.up.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.entry.up = self.up.load(Ordering::Relaxed);
        self.entry.down = self.down.load(Ordering::Relaxed);
        lock(&self.tally).log(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(host: &str, reason: &str) -> Entry {
        Entry::new(host, 443, "CONNECT", false, reason.into())
    }

    #[test]
    fn summary_sorts_dedups_and_counts() {
        let mut t = Tally::new(None);
        for (h, p) in [("b.org", 443), ("a.org", 80), ("b.org", 443)] {
            t.request(h, p);
        }
        t.refused(denied("b.org", "not in the allowlist"));
        t.refused(denied("b.org", "not in the allowlist"));
        t.refused(Entry::new(
            "a.org",
            80,
            "GET",
            true,
            "could not resolve".into(),
        ));
        t.connected();
        assert_eq!(
            t.summary(),
            Summary {
                requested: vec![("a.org".into(), 80), ("b.org".into(), 443)],
                denied: vec![("b.org".into(), 443, "not in the allowlist".into(), 2)],
                allowed: 1,
                failed: 1,
                untracked: 0,
            }
        );
    }

    #[test]
    fn lists_are_capped() {
        let mut t = Tally::new(None);
        for i in 0..MAX_TRACKED + 5 {
            t.request(&format!("h{i}.org"), 443);
        }
        t.request("h0.org", 443); // already known: not "untracked"
        let s = t.summary();
        assert_eq!((s.requested.len(), s.untracked), (MAX_TRACKED, 5));
    }

    #[test]
    fn log_line_has_every_field() {
        let mut e = Entry::new("a.org", 443, "CONNECT", true, "allowed by x".into());
        (e.up, e.down) = (3, 4);
        let v: serde_json::Value = serde_json::from_str(&e.json(1.5)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": 1.5, "host": "a.org", "port": 443, "method": "CONNECT",
                "allowed": true, "reason": "allowed by x", "bytes_up": 3, "bytes_down": 4})
        );
    }

    #[test]
    fn log_line_is_one_escaped_line_whatever_the_fields_hold() {
        // The parser refuses such requests before they get here; the log escapes them anyway.
        let e = Entry::new(
            "a\u{1b}]0;x\u{7}.org",
            443,
            "G`id`$(x)&\n\u{1b}[2J",
            false,
            "r\r\n".into(),
        );
        let line = e.json(1.0);
        assert!(!line.bytes().any(|b| b.is_ascii_control()), "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["method"], "G`id`$(x)&\n\u{1b}[2J");
    }

    #[test]
    fn record_logs_on_drop_and_unwritable_log_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let tally = Arc::new(Mutex::new(Tally::new(Some(File::create(&path).unwrap()))));
        let r = Record::new(tally.clone(), denied("a.org", "x"));
        r.add_up(7);
        r.down.fetch_add(9, Ordering::Relaxed);
        drop(r);
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(
            (v["bytes_up"].as_u64(), v["bytes_down"].as_u64()),
            (Some(7), Some(9))
        );
        // A read-only handle: every write fails, and nothing else happens.
        let mut t = Tally::new(Some(File::open(&path).unwrap()));
        t.refused(denied("a.org", "x"));
        assert_eq!(t.summary().denied.len(), 1);
    }
}
