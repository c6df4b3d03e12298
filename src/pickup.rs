//! Live pick-up of `agentbox allow`: the allow rules a running filtered session would get
//! if it started now, from the same config files as its launch. The proxy asks for them only
//! when its current rules refuse a request, and at most every `MIN_INTERVAL`, so a client
//! hammering a refused host costs two small file reads a second, not one per request.
//!
//! Only what the user could have allowed counts: the user's config (`[defaults]` and the
//! run's `[profile.NAME]`) and the project's file only while it is trusted as it is now; an
//! untrusted project file adds its denials and nothing else. The launch's rules stay under
//! whatever the files say (a host allowed by a flag stays allowed), and denials are only added.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config;
use crate::hostenv::Env;
use crate::net::proxy::Refresh;
use crate::net::rules::{AllowSources, NetFilter, NetPolicy, Pattern};

/// The files are read again at most this often.
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// `base` (the launch's rules) with what the files of `src` say now added.
pub fn read(src: &AllowSources, base: &NetPolicy) -> Result<NetPolicy> {
    let user = config::load_user(&src.config_dir)?;
    let mut allow: Vec<&String> = Vec::new();
    let mut private: Vec<&String> = Vec::new();
    let mut deny: Vec<&String> = Vec::new();
    // As the launch merges them: the run's profile and each one its `extends` leads through.
    let mut sections = vec![&user.defaults];
    sections.extend(
        config::profiles::chain(&src.profile, &user.profile)
            .iter()
            .filter_map(|n| user.profile.get(n)),
    );
    let project = match &src.project {
        Some(p) => config::load_project(&src.config_dir, p)?,
        None => None,
    };
    for s in &sections {
        allow.extend(&s.allow_domains);
        private.extend(&s.allow_private_hosts);
        deny.extend(&s.deny_domains);
    }
    if let Some(p) = &project {
        deny.extend(&p.settings.deny_domains);
        if p.trusted {
            allow.extend(&p.settings.allow_domains);
            private.extend(&p.settings.allow_private_hosts);
        }
    }
    let mut next = base.clone();
    let add = |list: &mut Vec<Pattern>, texts: &[&String]| -> Result<()> {
        for t in texts {
            let p = Pattern::parse(t)?;
            if !list.contains(&p) {
                list.push(p);
            }
        }
        Ok(())
    };
    add(&mut next.allow, &allow)?;
    add(&mut next.deny, &deny)?;
    let private: Vec<String> = private
        .iter()
        .map(|s| (*s).clone())
        .filter(|s| Pattern::parse(s).is_ok_and(|p| !base.private.contains(&p)))
        .collect();
    next.with_private(&private)
}

/// The sources of a run in `project` (as given; else the current directory) with `profile`.
/// None where there is no config directory (no home): nothing to pick up then.
pub fn sources(env: &Env, project: Option<&Path>, profile: &str) -> Option<AllowSources> {
    let dir = match project {
        Some(p) => p.to_owned(),
        None => env.cwd().ok()?.to_owned(),
    };
    Some(AllowSources {
        config_dir: config::dir(env).ok()?,
        project: std::fs::canonicalize(dir).ok(),
        profile: profile.to_owned(),
    })
}

/// For the proxy: the filter's rules as its sources say now, where it has sources.
pub fn refresher(filter: &NetFilter) -> Option<Refresh> {
    let reloader = Reloader::new(filter.sources.clone()?, filter.rules.clone());
    Some(Arc::new(move || reloader.fresh()))
}

/// The rules in force, re-read from the sources when asked and due.
pub struct Reloader {
    sources: AllowSources,
    base: NetPolicy,
    state: Mutex<(Option<Instant>, Arc<NetPolicy>)>,
}

impl Reloader {
    pub fn new(sources: AllowSources, base: NetPolicy) -> Reloader {
        let current = Arc::new(base.clone());
        Reloader {
            sources,
            base,
            state: Mutex::new((None, current)),
        }
    }

    /// The rules as the files say now (or as last read, within `MIN_INTERVAL`). A file that
    /// cannot be read or parsed now (the user is mid-edit) leaves the last rules in force.
    pub fn fresh(&self) -> Arc<NetPolicy> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = state.0.is_none_or(|t| t.elapsed() >= MIN_INTERVAL);
        if due {
            state.0 = Some(Instant::now());
            if let Ok(p) = read(&self.sources, &self.base) {
                state.1 = Arc::new(p);
            }
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::rules::{Decision, Host};

    fn allowed(p: &NetPolicy, h: &str) -> bool {
        matches!(p.decide(&Host::parse(h).unwrap(), 443), Decision::Allow(_))
    }

    #[test]
    fn picks_up_the_user_file_and_only_a_trusted_project() {
        let cfg = tempfile::tempdir().unwrap();
        let proj = tempfile::tempdir().unwrap();
        let project = std::fs::canonicalize(proj.path()).unwrap();
        let sources = AllowSources {
            config_dir: cfg.path().to_owned(),
            project: Some(project.clone()),
            profile: "claude".into(),
        };
        let base = NetPolicy::new(&["flag.example".into()], &[]).unwrap();
        let p = read(&sources, &base).unwrap();
        assert!(allowed(&p, "flag.example") && !allowed(&p, "new.example"));
        std::fs::write(
            cfg.path().join("config.toml"),
            "[defaults]\nallow_domains = [\"new.example\"]\n\
             [profile.claude]\nallow_domains = [\"mine.example\"]\n\
             [profile.codex]\nallow_domains = [\"theirs.example\"]\n",
        )
        .unwrap();
        std::fs::write(
            project.join(".agentbox.toml"),
            "allow_domains = [\"proj.example\"]\ndeny_domains = [\"flag.example\"]\n",
        )
        .unwrap();
        let p = read(&sources, &base).unwrap();
        assert!(allowed(&p, "new.example") && allowed(&p, "mine.example"));
        assert!(!allowed(&p, "theirs.example"), "another profile's section");
        // A profile of the user's own takes what its base profile allows since.
        let mine = AllowSources {
            profile: "mine".into(),
            ..sources.clone()
        };
        let with_mine = "[profile.mine]\nextends = \"claude\"\n";
        let text = std::fs::read_to_string(cfg.path().join("config.toml")).unwrap();
        std::fs::write(cfg.path().join("config.toml"), format!("{text}{with_mine}")).unwrap();
        assert!(allowed(&read(&mine, &base).unwrap(), "mine.example"));
        // Untrusted: its denial counts, its allowance does not.
        assert!(!allowed(&p, "proj.example") && !allowed(&p, "flag.example"));
        config::trust(cfg.path(), &project).unwrap();
        let p = read(&sources, &base).unwrap();
        assert!(allowed(&p, "proj.example"));
    }

    #[test]
    fn a_broken_file_keeps_the_last_rules() {
        let cfg = tempfile::tempdir().unwrap();
        let sources = AllowSources {
            config_dir: cfg.path().to_owned(),
            project: None,
            profile: "generic".into(),
        };
        let r = Reloader::new(sources, NetPolicy::default());
        std::fs::write(
            cfg.path().join("config.toml"),
            "[defaults]\nallow_domains = [\"a.example\"]\n",
        )
        .unwrap();
        assert!(allowed(&r.fresh(), "a.example"));
        std::fs::write(cfg.path().join("config.toml"), "[defaults\n").unwrap();
        std::thread::sleep(MIN_INTERVAL);
        assert!(allowed(&r.fresh(), "a.example"));
    }
}
