//! Secrets in the home and in the project are masked (at any depth, behind symlinks, under
//! names the scan prunes), UNIX sockets in the project stay unreachable and git's credential
//! store stays outside; each beside the control that shows the file is really there.

use std::fs;
use std::os::unix::fs::symlink;

use crate::harness::each_user;

#[test]
fn home_secrets_are_invisible_but_git_config_is_there() {
    each_user(|w| {
        w.write("home/.ssh/id_rsa", "PRIVATE KEY");
        w.write("home/.aws/credentials", "aws_secret");
        w.write("home/.gitconfig", "[user]\n\tname = Tester\n");
        let out = w
            .sh(
                &[],
                "cat ~/.ssh/id_rsa 2>&1; cat ~/.aws/credentials 2>&1; cat ~/.gitconfig",
            )
            .ok();
        assert!(
            !out.contains("PRIVATE KEY") && !out.contains("aws_secret"),
            "{out}"
        );
        assert!(out.contains("name = Tester"), "{out}");
        // Writing the git config fails; the host copy stays as it was.
        let out = w
            .sh(&[], "echo evil >> ~/.gitconfig && echo wrote; true")
            .ok();
        assert!(!out.contains("wrote"));
        assert!(
            !fs::read_to_string(w.home.join(".gitconfig"))
                .unwrap()
                .contains("evil")
        );
    });
}

#[test]
fn project_secrets_are_masked_at_any_depth() {
    each_user(|w| {
        w.write("home/src/project/a/b/c/.env", "DEEP_SECRET=1");
        w.write("home/src/project/.env.example", "EXAMPLE=1");
        w.write("home/src/project/keys/server.pem", "PEM SECRET");
        w.write("home/src/project/src/main.rs", "fn main() {}");
        let out = w
            .sh(
                &[],
                "printf '[%s]' \"$(cat a/b/c/.env)\"; cat .env.example; cat keys/server.pem; \
                 cat src/main.rs; echo x > a/b/c/.env && echo wrote-env; \
                 rm a/b/c/.env 2>/dev/null && echo removed-env; echo",
            )
            .ok();
        assert!(out.contains("[]"), "{out}");
        assert!(
            out.contains("EXAMPLE=1") && out.contains("fn main"),
            "{out}"
        );
        assert!(
            !out.contains("PEM SECRET") && !out.contains("DEEP_SECRET"),
            "{out}"
        );
        assert!(
            !out.contains("wrote-env") && !out.contains("removed-env"),
            "{out}"
        );
        let env = w.project.join("a/b/c/.env");
        assert_eq!(fs::read_to_string(env).unwrap(), "DEEP_SECRET=1");

        // --no-hide-env shows it (the control), --unhide one pattern, --hide adds one.
        let out = w.sh(&["--no-hide-env"], "cat a/b/c/.env").ok();
        assert_eq!(out, "DEEP_SECRET=1");
        let out = w
            .sh(&["--unhide", "*.pem"], "cat keys/server.pem a/b/c/.env")
            .ok();
        assert_eq!(out, "PEM SECRET");
        let out = w.sh(&["--hide", "src/*.rs"], "cat src/main.rs").ok();
        assert_eq!(out, "");
    });
}

#[test]
fn a_symlinked_secret_is_masked_not_followed() {
    each_user(|w| {
        w.write("home/src/project/config/real-secrets.txt", "LINKED SECRET");
        symlink("config/real-secrets.txt", w.project.join(".env")).unwrap();
        let out = w
            .sh(&[], "cat .env; cat config/real-secrets.txt; echo end")
            .ok();
        assert_eq!(out, "end\n");
        // Control: the same files without masking.
        let out = w.sh(&["--no-hide-env"], "cat .env").ok();
        assert_eq!(out, "LINKED SECRET");
    });
}

/// Renaming a directory that holds a secret to `node_modules`, or planting `CACHEDIR.TAG` beside
/// it, does not hide the secret from the next scan.
#[test]
fn pruned_names_do_not_unmask_secrets() {
    each_user(|w| {
        w.write("home/src/project/config/.env", "DBPASS=hunter2");
        w.write("home/src/project/app/.env.local", "K=v");
        w.sh(&[], ": > config/CACHEDIR.TAG; mv app node_modules")
            .ok();
        let out = w
            .sh(&[], "cat config/.env node_modules/.env.local; echo end")
            .ok();
        assert_eq!(out, "end\n");
        // Control: both files are there and readable without masking.
        let out = w
            .sh(
                &["--no-hide-env"],
                "cat config/.env node_modules/.env.local",
            )
            .ok();
        assert_eq!(out, "DBPASS=hunter2K=v");
    });
}

/// A UNIX socket inside the project is masked (read-only mounts do not stop connect()), and
/// the user's git credential store is not among the git settings shown.
#[test]
fn sockets_in_the_project_and_git_credentials_stay_outside() {
    each_user(|w| {
        let path = w.project.join("dev.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        w.chown(&path);
        let connect = format!(
            "perl -MIO::Socket::UNIX -e 'my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]); \\
             print $s ? \"connected\\n\" : \"refused\\n\"' {}",
            path.display()
        );
        let out = w.sh(&[], &connect).ok();
        assert_eq!(out, "refused\n");
        // Control: unhidden, the socket is reachable.
        let out = w.sh(&["--unhide", "dev.sock"], &connect).ok();
        assert_eq!(out, "connected\n");
        drop(listener);

        w.write("home/.config/git/config", "[user]\n\tname = Tester\n");
        w.write(
            "home/.config/git/credentials",
            "https://u:ghp_SECRET@github.com\n",
        );
        let out = w
            .sh(
                &[],
                "cat ~/.config/git/config; cat ~/.config/git/credentials 2>&1; true",
            )
            .ok();
        assert!(out.contains("name = Tester"), "{out}");
        assert!(!out.contains("ghp_SECRET"), "{out}");
    });
}
