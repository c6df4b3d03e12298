#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a benchmark panics where its premise fails and prints its figures"
)]
//! Benchmark of the exit audit (`cargo bench --bench audit`): on a generated 100,000-file
//! project with the usual runs-later items (git hooks, editor settings, workflows, agent
//! config, instruction files), times the audit's end state (`audit::Snapshot::end`: a fresh
//! scan plus hashing every runs-later item) against the scan alone, and the start state (the
//! same items hashed without a scan: the launch scan already ran), interleaved.
//!
//! It panics if the audit does not see the planted items, or reports a change on an unchanged
//! tree; it never asserts on time. Knobs: `AUDIT_BENCH_RUNS` (default 20), `TMPDIR`.
//! Method, figures and history: BENCHMARKS.md, "Exit audit".

use std::error::Error;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use agentbox::audit::{self, Snapshot};
use agentbox::secrets::{self, Matcher};

const SOURCE_DIRS: usize = 1000;
const FILES_PER_DIR: usize = 50;
const NODE_MODULES_FILES: usize = 30_000;
const TARGET_FILES: usize = 15_000;
const GIT_OBJECTS: usize = 5_000;
const WARMUP: usize = 3;
const TARGET_MS: f64 = 60.0;

type R<T> = Result<T, Box<dyn Error>>;

fn write(root: &Path, rel: &str, body: &[u8]) -> R<()> {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(p, body)?;
    Ok(())
}

fn generate(root: &Path) -> R<usize> {
    let mut files = 0;
    for d in 0..SOURCE_DIRS {
        let dir = root.join(format!("src/m{}/d{d}", d % 20));
        fs::create_dir_all(&dir)?;
        for f in 0..FILES_PER_DIR {
            fs::write(dir.join(format!("f{f}.rs")), b"")?;
            files += 1;
        }
    }
    for (base, n) in [
        ("node_modules", NODE_MODULES_FILES),
        ("target/debug", TARGET_FILES),
        (".git/objects", GIT_OBJECTS),
    ] {
        for i in 0..n {
            let dir = root.join(format!("{base}/p{}", i / 100));
            if i % 100 == 0 {
                fs::create_dir_all(&dir)?;
            }
            fs::write(dir.join(format!("e{i}")), b"")?;
            files += 1;
        }
    }
    write(
        root,
        "target/CACHEDIR.TAG",
        b"Signature: 8a477f597d28d172789f06886806bc55",
    )?;
    // The runs-later items, with content of realistic size.
    let body = vec![b'#'; 2048];
    let mut items = vec![
        ".git/config".to_owned(),
        ".envrc".into(),
        ".mcp.json".into(),
        "AGENTS.md".into(),
        "CLAUDE.md".into(),
        ".claude/settings.json".into(),
    ];
    items.extend((0..14).map(|i| format!(".git/hooks/h{i}.sample")));
    items.extend((0..3).map(|i| format!(".vscode/f{i}.json")));
    items.extend((0..5).map(|i| format!(".github/workflows/w{i}.yml")));
    items.extend((0..3).map(|i| format!(".husky/h{i}")));
    for it in &items {
        write(root, it, &body)?;
        files += 1;
    }
    Ok(files)
}

fn median(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() -> R<()> {
    let runs: usize = std::env::var("AUDIT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    let tmp = tempfile::Builder::new()
        .prefix("agentbox-audit-bench.")
        .tempdir()?;
    let root = fs::canonicalize(tmp.path())?;
    let files = generate(&root)?;
    std::process::Command::new("sync").status()?;
    let matcher = Matcher::new(true, &[], &[])?;
    let roots = [root.clone()];

    let before = Snapshot::end(&Snapshot::default(), &roots, &matcher);
    let after = Snapshot::end(&before, &roots, &matcher);
    assert_eq!(audit::compare(&before, &after), [], "false alarm");
    let report = secrets::scan(&root, &matcher).expect("scan");
    assert_eq!(report.runs_later.len(), 5, "{:?}", report.runs_later);
    assert_eq!(report.watched.len(), 3, "{:?}", report.watched);

    let (mut scan_t, mut end_t, mut hash_t) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..WARMUP + runs {
        let mut t = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (k + round) % 3;
            let t0 = Instant::now();
            match which {
                0 => {
                    std::hint::black_box(secrets::scan(&root, &matcher).expect("scan"));
                }
                1 => {
                    std::hint::black_box(Snapshot::end(&before, &roots, &matcher));
                }
                // No root to scan: only the items known at start, hashed, as at launch.
                _ => {
                    std::hint::black_box(Snapshot::end(&before, &[], &matcher));
                }
            }
            t[which] = t0.elapsed();
        }
        if round >= WARMUP {
            scan_t.push(t[0]);
            end_t.push(t[1]);
            hash_t.push(t[2]);
        }
    }
    let scan = median(&mut scan_t);
    let end = median(&mut end_t);
    let hash = median(&mut hash_t);
    println!("agentbox exit-audit benchmark");
    println!(
        "  tree: {files} files at {} ({WARMUP} warm-up + {runs} timed rounds, interleaved)",
        root.display()
    );
    println!("  secrets::scan alone (launch scan)     median {scan:>7.2} ms");
    println!("  audit end state (rescan + hashing)    median {end:>7.2} ms");
    println!("  hashing alone (= audit start state)   median {hash:>7.3} ms");
    let verdict = if end <= TARGET_MS { "MET" } else { "MISSED" };
    println!(
        "RESULT audit at exit median {end:.2} ms over {files} files, warm; target <= {TARGET_MS} ms: {verdict}"
    );
    Ok(())
}
