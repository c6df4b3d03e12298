//! `agentbox doctor`'s trial sandboxes are run's own plan: where `agentbox run -- true` starts,
//! the trial starts; where run refuses before bwrap, the doctor's sandbox check fails with
//! run's own message and hint.

use std::ffi::OsStr;

use crate::harness::{Out, World, each_user};

/// The doctor's check `name`: its status and detail, and its fix lines joined.
fn check(out: &Out, name: &str) -> (String, String, String) {
    let doc: serde_json::Value = serde_json::from_slice(&out.0.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", out.stderr()));
    let c = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in doctor: {doc}"))
        .clone();
    let fix = c["fix"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap().to_owned(),
        c["detail"].as_str().unwrap().to_owned(),
        fix,
    )
}

#[test]
fn doctor_trial_meets_what_run_meets() {
    each_user(|w: &World| {
        let doctor = || w.cmd(&["doctor", "--json"].map(OsStr::new));
        let run = || w.cmd(&["run", "--", "true"].map(OsStr::new));
        // Where run starts, the trials start.
        assert_eq!(Out(run().output().unwrap()).code(), 0);
        let out = Out(doctor().output().unwrap());
        assert_eq!(check(&out, "sandbox").0, "ok", "{}", out.stdout());
        assert_eq!(check(&out, "seccomp").0, "ok", "{}", out.stdout());
        // Where run refuses (a home that is not there), the doctor says what run says.
        let gone = w.base.join("no-such-home");
        let refused = Out(run().env("HOME", &gone).output().unwrap());
        assert_eq!(refused.code(), 125, "{}", refused.stderr());
        let said = refused.stderr();
        let message = said
            .lines()
            .find_map(|l| l.strip_prefix("agentbox: error: "))
            .unwrap_or_else(|| panic!("run said: {said}"));
        let hint = said
            .lines()
            .find_map(|l| l.strip_prefix("hint: "))
            .unwrap_or_else(|| panic!("run said: {said}"));
        let out = Out(doctor().env("HOME", &gone).output().unwrap());
        let (status, detail, fix) = check(&out, "sandbox");
        assert_eq!(status, "fail", "{}", out.stdout());
        assert!(detail.contains(message), "{detail} / {message}");
        assert!(fix.contains(hint), "{fix} / {hint}");
        assert_eq!(check(&out, "filtered-network").0, "warn");
        assert_ne!(out.code(), 0, "a failing check blocks run");
    });
}
