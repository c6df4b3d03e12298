//! What a config file's types cannot say by themselves, checked once when the file is read,
//! each error with the file, line and column: the keys only a profile of the user's own may
//! hold (`extends`, `about`; `commands` in any `[profile.NAME]`), a profile's name and base
//! (unknown, a cycle), a section that defines nothing. Nothing is silently ignored.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;

use super::UserConfig;
use crate::error::Fail;

/// The keys of each table, with where they are (a second, shallow read of the same text).
type Keys = BTreeMap<Spanned<String>, IgnoredAny>;

#[derive(Deserialize)]
struct UserKeys {
    #[serde(default)]
    defaults: Keys,
    #[serde(default)]
    profile: BTreeMap<Spanned<String>, Keys>,
}

/// Keys that mean something only in `[profile.NAME]`.
const PROFILE_ONLY: [&str; 3] = ["extends", "commands", "about"];

const HINT: &str = "see \"Config files\" in README.md: a profile of your own is \
                    [profile.NAME] with extends = \"generic\" (or another profile), commands, \
                    and settings";

fn at(file: &Path, text: &str, span: Range<usize>, msg: String, hint: &str) -> anyhow::Error {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Fail::hint(format!("{}:{line}:{col}: {msg}", file.display()), hint).into()
}

fn key<'a>(keys: &'a Keys, name: &str) -> Option<&'a Spanned<String>> {
    keys.keys().find(|k| k.get_ref() == name)
}

/// A profile's name becomes a directory name (its home): plain characters only.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The project's file: top-level keys only, none of the profile-only ones.
pub(super) fn project(file: &Path, text: &str) -> Result<()> {
    let keys: Keys = toml::from_str(text).map_err(|e| super::located(file, text, &e))?;
    for k in PROFILE_ONLY {
        if let Some(k) = key(&keys, k) {
            return Err(at(
                file,
                text,
                k.span(),
                format!(
                    "`{}` belongs in a profile of your own, in your config file",
                    k
                ),
                "remove it from the project's file",
            ));
        }
    }
    Ok(())
}

/// The user's file, already parsed as `cfg`.
pub(super) fn user(file: &Path, text: &str, cfg: &UserConfig) -> Result<()> {
    let keys: UserKeys = toml::from_str(text).map_err(|e| super::located(file, text, &e))?;
    for k in PROFILE_ONLY {
        if let Some(k) = key(&keys.defaults, k) {
            return Err(at(
                file,
                text,
                k.span(),
                format!("`{k}` belongs in a [profile.NAME] section, not in [defaults]"),
                HINT,
            ));
        }
    }
    let builtin = |n: &str| crate::profile::builtin(n).is_some();
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, table) in &keys.profile {
        let n = name.get_ref().as_str();
        let Some(s) = cfg.profile.get(n) else {
            continue;
        };
        let err = |span: Range<usize>, msg: String| at(file, text, span, msg, HINT);
        if !valid_name(n) {
            return Err(err(
                name.span(),
                format!("profile name {n:?}: use letters, digits, '-', '_' and '.' only"),
            ));
        }
        if builtin(n) {
            for k in ["extends", "about"] {
                if let Some(k) = key(table, k) {
                    return Err(err(
                        k.span(),
                        format!(
                            "[profile.{n}] adjusts the built-in profile {n}, which cannot take \
                             `{k}`: give a profile of your own another name"
                        ),
                    ));
                }
            }
        } else if table.keys().all(|k| k.get_ref() == "about") {
            return Err(err(
                name.span(),
                format!(
                    "[profile.{n}] defines nothing: no built-in profile has this name, and it \
                     has no `extends`, `commands` or settings"
                ),
            ));
        }
        if let (Some(base), Some(k)) = (&s.extends, key(table, "extends")) {
            let known = builtin(base) || cfg.profile.contains_key(base);
            if !known {
                let mut names: Vec<String> = crate::profile::names()
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                names.extend(cfg.profile.keys().filter(|k| !builtin(k)).cloned());
                return Err(at(
                    file,
                    text,
                    k.span(),
                    format!("[profile.{n}] extends {base:?}: no such profile"),
                    &format!("one of: {}", names.join(", ")),
                ));
            }
            if let Some(cycle) = cycle(n, cfg) {
                return Err(err(
                    k.span(),
                    format!("[profile.{n}]: extends goes round in a circle: {cycle}"),
                ));
            }
        }
        for c in &s.commands {
            let span = key(table, "commands").map_or(name.span(), |k| k.span());
            if c.is_empty() || c.contains('/') || c.starts_with('-') {
                return Err(err(
                    span,
                    format!("[profile.{n}] commands: {c:?} is not a command name"),
                ));
            }
            if let Some(other) = claimed.insert(c, n) {
                return Err(err(
                    span,
                    format!(
                        "command {c:?} is in the commands of both [profile.{other}] and [profile.{n}]"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The chain from `start` through `extends`, when it comes back to a profile it passed.
fn cycle(start: &str, cfg: &UserConfig) -> Option<String> {
    let mut seen = vec![start];
    let mut cur = start;
    while let Some(next) = cfg.profile.get(cur).and_then(|s| s.extends.as_deref()) {
        if crate::profile::builtin(next).is_some() {
            return None;
        }
        let stop = seen.contains(&next);
        seen.push(next);
        if stop {
            return Some(seen.join(" -> "));
        }
        cur = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn load(text: &str) -> Result<super::UserConfig, String> {
        let file = Path::new("/c/config.toml");
        let cfg: super::UserConfig =
            toml::from_str(text).map_err(|e| super::super::located(file, text, &e).to_string())?;
        super::user(file, text, &cfg).map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    #[test]
    fn profiles_of_ones_own_are_checked_with_their_place() {
        let ok = "[profile.mine]\nextends = \"claude\"\ncommands = [\"mc\"]\nro = [\"~/x\"]\n\
                  [profile.claude]\nallow_domains = [\"a.example\"]\n";
        assert!(load(ok).is_ok());
        let cases = [
            // An unknown key (serde), with its place.
            (
                "[profile.mine]\nextend = \"claude\"\n",
                "/c/config.toml:2:1:",
            ),
            (
                "[profile.mine]\nextends = \"nope\"\n",
                "/c/config.toml:2:1: [profile.mine] extends \"nope\": no such profile",
            ),
            (
                "[profile.a]\nextends = \"b\"\n[profile.b]\nextends = \"a\"\n",
                "goes round in a circle: a -> b -> a",
            ),
            ("[profile.a]\nextends = \"a\"\n", "a -> a"),
            (
                "[profile.empty]\n",
                "/c/config.toml:1:10: [profile.empty] defines nothing",
            ),
            ("[profile.empty]\nabout = \"x\"\n", "defines nothing"),
            (
                "[profile.claude]\nextends = \"generic\"\n",
                "cannot take `extends`",
            ),
            (
                "[defaults]\ncommands = [\"x\"]\n",
                "/c/config.toml:2:1: `commands` belongs in a [profile.NAME]",
            ),
            (
                "[profile.\"../x\"]\nextends = \"generic\"\n",
                "profile name \"../x\"",
            ),
            (
                "[profile.a]\ncommands = [\"bin/x\"]\n",
                "is not a command name",
            ),
            (
                "[profile.a]\ncommands = [\"x\"]\n[profile.b]\ncommands = [\"x\"]\n",
                "both [profile.a] and [profile.b]",
            ),
        ];
        for (text, want) in cases {
            let err = load(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_examples_pass_the_checks() {
        let cfg = load(include_str!("../../examples/config.toml")).unwrap();
        assert!(cfg.profile["tools"].commands.contains(&"make".to_owned()));
        let file = Path::new("examples/agentbox.toml");
        super::project(file, include_str!("../../examples/agentbox.toml")).unwrap();
    }

    #[test]
    fn a_project_file_takes_no_profile_keys() {
        let file = Path::new("/p/.agentbox.toml");
        let err = super::project(file, "hide = [\"x\"]\nextends = \"claude\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/p/.agentbox.toml:2:1: `extends`"),
            "{err}"
        );
        assert!(super::project(file, "hide = [\"x\"]\n").is_ok());
    }
}
