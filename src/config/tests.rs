//! Config files: parsing with locations, layering under flags, and the trust of project files.

use super::*;
use clap::Parser;

fn args(flags: &[&str]) -> SandboxArgs {
    let mut argv = vec!["agentbox", "run"];
    argv.extend_from_slice(flags);
    argv.push("true");
    let crate::cli::Command::Run(run) = crate::cli::Cli::try_parse_from(argv).unwrap().command
    else {
        unreachable!()
    };
    run.sandbox
}

fn user(text: &str) -> UserConfig {
    parse(Path::new("config.toml"), text).unwrap()
}

#[test]
fn errors_name_file_line_and_column() {
    let err = parse::<UserConfig>(
        Path::new("/c.toml"),
        "[defaults]\nnet = \"none\"\nbogus = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("/c.toml:3:1:"), "{err}");
    assert!(err.contains("bogus"), "{err}");
    let err = parse::<UserConfig>(Path::new("/c.toml"), "[defaults]\nhide = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/c.toml:2:8:"), "{err}");
    let err = parse::<UserConfig>(Path::new("/c.toml"), "[defaults\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("/c.toml:1:"), "{err}");
}

#[test]
fn flags_win_and_lists_add_up() {
    let u = user(
        "[defaults]\nnet = \"none\"\nhide = [\"*.secret\"]\nmemory = \"2G\"\n\
         [profile.claude]\nallow_domains = [\"mcp.example.com\"]\nro = [\"~/.nvm\"]\n",
    );
    let mut a = args(&["--hide", "x.key", "--net", "host"]);
    let w = merge(&mut a, &u, "claude", None, Path::new("/home/u")).unwrap();
    assert!(w.is_empty());
    assert_eq!(a.net, Some(NetArg::Host));
    assert_eq!(a.hide, ["*.secret", "x.key"]);
    assert_eq!(a.allow_domain, ["mcp.example.com"]);
    assert_eq!(a.ro, [PathBuf::from("/home/u/.nvm")]);
    assert_eq!(a.memory, Some(2 << 30));
    // Another profile does not get claude's settings.
    let mut a = args(&[]);
    merge(&mut a, &u, "codex", None, Path::new("/home/u")).unwrap();
    assert!(a.allow_domain.is_empty());
    assert_eq!(a.net, Some(NetArg::None));
}

#[test]
fn ssh_agent_from_config_is_the_filter_with_its_keys() {
    use crate::cli::SshAgentArg;
    let u = user("[defaults]\nssh_agent = true\nssh_keys = [\"SHA256:a\"]\n");
    let mut a = args(&["--ssh-key", "me"]);
    merge(&mut a, &u, "generic", None, Path::new("/h")).unwrap();
    assert_eq!(a.ssh_agent, Some(SshAgentArg::Filtered));
    assert_eq!(a.ssh_key, ["SHA256:a", "me"]);
    // `--ssh-agent=raw` on the command line wins over the config's filter.
    let mut a = args(&["--ssh-agent=raw"]);
    merge(&mut a, &u, "generic", None, Path::new("/h")).unwrap();
    assert_eq!(a.ssh_agent, Some(SshAgentArg::Raw));
    // An untrusted project file names no key (a key named there could be the user's deploy
    // key for any host) and turns on no agent.
    let mut a = args(&[]);
    let text = "ssh_agent = true\nssh_keys = [\"SHA256:b\"]\n";
    let w = merge(
        &mut a,
        &UserConfig::default(),
        "generic",
        Some(&project(text, false)),
        Path::new("/h"),
    )
    .unwrap();
    assert_eq!((a.ssh_agent, a.ssh_key.len()), (None, 0));
    assert!(w[0].contains("ssh_keys"), "{w:?}");
}

fn project(text: &str, trusted: bool) -> ProjectConfig {
    ProjectConfig {
        file: "/p/.agentbox.toml".into(),
        settings: parse(Path::new("/p/.agentbox.toml"), text).unwrap(),
        trusted,
        changed: false,
    }
}

#[test]
fn an_untrusted_project_file_only_tightens() {
    let text = "net = \"host\"\nallow_domains = [\"evil.example\"]\nunhide = [\".env\"]\n\
                env = [\"AWS_SECRET_ACCESS_KEY\"]\nhide = [\"*.csv\"]\n\
                deny_domains = [\"*.tracker.example\"]\npids = 64\nports = [\"3000\"]\n";
    let mut a = args(&[]);
    let w = merge(
        &mut a,
        &UserConfig::default(),
        "generic",
        Some(&project(text, false)),
        Path::new("/h"),
    )
    .unwrap();
    assert_eq!(a.net, None);
    assert!(a.allow_domain.is_empty() && a.unhide.is_empty() && a.env.is_empty());
    assert_eq!(a.hide, ["*.csv"]);
    assert_eq!(a.deny_domain, ["*.tracker.example"]);
    assert_eq!(a.pids, Some(64));
    assert!(w[0].contains("net, allow_domains, unhide, env"), "{w:?}");
    assert!(a.port.is_empty() && w[0].contains("ports"), "{w:?}");
    assert!(w[0].contains("agentbox trust"), "{w:?}");

    // Trusted, all of it applies.
    let mut a = args(&[]);
    let w = merge(
        &mut a,
        &UserConfig::default(),
        "generic",
        Some(&project(text, true)),
        Path::new("/h"),
    )
    .unwrap();
    assert!(w.is_empty());
    assert_eq!(a.net, Some(NetArg::Host));
    assert_eq!(a.unhide, [".env"]);
    assert_eq!(a.port, ["3000"]);

    // A stricter network is tightening.
    let u = user("[defaults]\nnet = \"host\"\n");
    let mut a = args(&[]);
    merge(
        &mut a,
        &u,
        "generic",
        Some(&project("net = \"none\"\n", false)),
        Path::new("/h"),
    )
    .unwrap();
    assert_eq!(a.net, Some(NetArg::None));

    // Stricter than the user's defaults, looser than the profile's own: not tightening.
    let u = user("[defaults]\nnet = \"host\"\n[profile.claude]\nnet = \"none\"\n");
    let mut a = args(&[]);
    let w = merge(
        &mut a,
        &u,
        "claude",
        Some(&project("net = \"filtered\"\n", false)),
        Path::new("/h"),
    )
    .unwrap();
    assert_eq!(a.net, Some(NetArg::None));
    assert!(w[0].contains("net"), "{w:?}");
}

#[test]
fn an_untrusted_project_file_cannot_raise_the_users_limits() {
    let u =
        user("[defaults]\nmemory = \"2G\"\n[profile.mine]\nextends = \"generic\"\npids = 100\n");
    let merged = |text: &str, profile: &str| {
        let mut a = args(&[]);
        let w = merge(
            &mut a,
            &u,
            profile,
            Some(&project(text, false)),
            Path::new("/h"),
        )
        .unwrap();
        (a.memory, a.pids, w)
    };
    let (memory, pids, w) = merged("memory = \"64G\"\npids = 100000\n", "mine");
    assert_eq!((memory, pids), (Some(2 << 30), Some(100)));
    assert!(w[0].contains("memory, pids"), "{w:?}");
    // Lower ones are tightening, and count.
    let (memory, pids, w) = merged("memory = \"1G\"\npids = 50\n", "mine");
    assert_eq!((memory, pids), (Some(1 << 30), Some(50)));
    assert!(w.is_empty(), "{w:?}");
    // Where the user set none, any limit is tightening.
    let (_, pids, _) = merged("pids = 100000\n", "generic");
    assert_eq!(pids, Some(100000));
}

#[test]
fn trust_is_for_the_exact_content() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("config");
    let proj = t.path().join("proj");
    fs::create_dir_all(&proj).unwrap();
    fs::write(proj.join(PROJECT_FILE), "hide = [\"a\"]\n").unwrap();
    let before = load_project(&home, &proj).unwrap().unwrap();
    assert!(!before.trusted && !before.changed);
    trust(&home, &proj).unwrap();
    assert!(load_project(&home, &proj).unwrap().unwrap().trusted);
    fs::write(
        proj.join(PROJECT_FILE),
        "hide = [\"a\"]\nunhide = [\".env\"]\n",
    )
    .unwrap();
    let after = load_project(&home, &proj).unwrap().unwrap();
    assert!(!after.trusted && after.changed);
    // A file with errors cannot be trusted.
    fs::write(proj.join(PROJECT_FILE), "nonsense = 1\n").unwrap();
    assert!(trust(&home, &proj).is_err());
}

#[test]
fn the_examples_parse() {
    let user: UserConfig = parse(
        Path::new("examples/config.toml"),
        include_str!("../../examples/config.toml"),
    )
    .unwrap();
    assert!(user.profile.contains_key("claude"));
    let project: Settings = parse(
        Path::new("examples/agentbox.toml"),
        include_str!("../../examples/agentbox.toml"),
    )
    .unwrap();
    assert!(!project.hide.is_empty() && !project.allow_domains.is_empty());
}

#[test]
fn a_trust_record_is_never_written_through_a_symlink() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("config");
    let proj = t.path().join("proj");
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir_all(&proj).unwrap();
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(proj.join(PROJECT_FILE), "hide = [\"a\"]\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.join("trusted")).unwrap();
    let e = trust(&home, &proj).unwrap_err();
    assert!(format!("{e:#}").contains("symlink"), "{e:#}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    // Control: with a plain directory there, the record is written.
    fs::remove_file(home.join("trusted")).unwrap();
    trust(&home, &proj).unwrap();
    assert!(load_project(&home, &proj).unwrap().unwrap().trusted);
}

#[test]
fn resolve_is_the_flags_over_the_files_with_no_io() {
    // Made-up files and a home that does not exist: resolve reads nothing.
    let files = Files {
        home: "/nonexistent/home".into(),
        user: user("[profile.claude]\nro = [\"~/.nvm\"]\nallow_domains = [\"mcp.example\"]\n"),
        project: Some(project("hide = [\"*.csv\"]\nnet = \"host\"\n", false)),
    };
    let (p, w) = resolve(
        args(&["--hide", "x.key"]),
        vec!["claude".into()],
        false,
        &files,
    )
    .unwrap();
    assert_eq!(p.profile.name, "claude");
    assert_eq!(p.net, crate::policy::NetMode::Filtered);
    assert!(p.filter.allow.contains(&"mcp.example".to_owned()));
    assert_eq!(p.hide, ["*.csv", "x.key"]);
    assert_eq!(p.extra[0].path, Path::new("/nonexistent/home/.nvm"));
    assert!(w[0].contains("ignoring net"), "{w:?}");
}

#[test]
fn toolchains_false_is_no_toolchains_and_a_project_may_say_it_untrusted() {
    let mut a = args(&[]);
    merge(
        &mut a,
        &user("[defaults]\ntoolchains = false\n"),
        "generic",
        None,
        Path::new("/h"),
    )
    .unwrap();
    assert!(a.no_toolchains);
    // Showing less is tightening: an untrusted project file may turn them off, silently.
    let mut a = args(&[]);
    let w = merge(
        &mut a,
        &UserConfig::default(),
        "generic",
        Some(&project("toolchains = false\n", false)),
        Path::new("/h"),
    )
    .unwrap();
    assert!(a.no_toolchains && w.is_empty(), "{w:?}");
    // `true` is the default: it does not undo the flag.
    let mut a = args(&["--no-toolchains"]);
    merge(
        &mut a,
        &user("[defaults]\ntoolchains = true\n"),
        "generic",
        None,
        Path::new("/h"),
    )
    .unwrap();
    assert!(a.no_toolchains);
}

#[test]
fn credentials_for_the_broker_come_from_the_users_config_only() {
    let text = "[[profile.claude.credential]]\nvar = \"GITHUB_TOKEN\"\nheader = \"Authorization\"\n\
                bearer = true\nbase_url_var = \"GITHUB_API_URL\"\n\
                upstream = \"https://api.github.com\"\n";
    let u = user(text);
    let mut a = args(&[]);
    merge(&mut a, &u, "claude", None, Path::new("/home/u")).unwrap();
    assert_eq!(a.credentials.len(), 1);
    assert_eq!(a.credentials[0].header, "authorization");
    assert!(a.credentials[0].bearer);
    // Another profile does not get it.
    let mut a = args(&[]);
    merge(&mut a, &u, "codex", None, Path::new("/home/u")).unwrap();
    assert!(a.credentials.is_empty());
    // A bad one is an error at its place in the file.
    for (bad, what) in [
        ("upstream = \"http://gateway.example.com\"", "only loopback"),
        ("upstream = \"https://a.com/?q=1\"", "query"),
        ("header = \"Content-Length\"", "carry a key"),
        ("var = \"github token\"", "variable name"),
    ] {
        let key = bad.split(' ').next().unwrap();
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} ")) {
                    bad
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let err = parse::<UserConfig>(Path::new("/c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/c.toml:"), "{err}");
        assert!(err.contains(what), "{bad}: {err}");
    }
    // An untrusted project file cannot choose where the user's key goes.
    let p = project(
        "[[credential]]\nvar = \"ANTHROPIC_API_KEY\"\nheader = \"x-api-key\"\n\
         base_url_var = \"X_BASE_URL\"\nupstream = \"https://evil.example.com\"\n",
        false,
    );
    let mut a = args(&[]);
    let w = merge(
        &mut a,
        &UserConfig::default(),
        "claude",
        Some(&p),
        Path::new("/h"),
    )
    .unwrap();
    assert!(a.credentials.is_empty());
    assert!(w.iter().any(|w| w.contains("credential")), "{w:?}");
}
