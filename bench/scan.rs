#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "a benchmark panics where its premise fails and prints its figures"
)]
//! Benchmark of the secret scan (`cargo bench --bench scan`): generates a deterministic
//! 100,000-file project tree, then times `secrets::scan` against two single-threaded
//! `read_dir` walks of the same tree, interleaved in one run, so the figure that matters is a
//! ratio to a baseline measured on the same machine at the same moment.
//!
//! It fails (panics) if the scan does not find exactly the planted secrets: a scan that skips
//! everything would otherwise look very fast. It must not assert on time; it only reports.
//!
//! Knobs: `SCAN_BENCH_RUNS` (timed runs, default 30), `TMPDIR` (where the tree goes).
//! `bash bench/launch.sh` runs it after the launch benchmark. Method, figures and history:
//! BENCHMARKS.md, "Scan".

use std::collections::HashSet;
use std::error::Error;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentbox::rules::PRUNED_DIRS;
use agentbox::secrets::{self, Matcher};

const TOTAL_FILES: usize = 100_000;
const NODE_MODULES_FILES: usize = 30_000;
const TARGET_FILES: usize = 15_000;
const GIT_FILES: usize = 5_000;
const WARMUP_RUNS: usize = 3;
/// The target for a warm scan of this tree on the 2-core reference machine.
const TARGET_MS: f64 = 60.0;

/// The secrets planted where the scan must find them (relative paths, sorted).
/// Sorted as the scan reports them. Secrets inside node_modules, a CACHEDIR.TAG cache and .git
/// count too: an earlier run could rename a directory holding a secret to one of those names.
const PLANTED: &[&str] = &[
    ".git/modules/.env",
    "deploy/keys/id_rsa",
    "node_modules/dotenv/.env",
    "node_modules/tls-fixtures/test/server.pem",
    "services/api/config/.env",
    "target/debug/.env",
    "target/debug/build/openssl-sys-1/out/test.pem",
    "web/certs/x.pem",
];

/// Look-alikes the scan must *not* report: templates, public keys, and certificate files that
/// hold only certificates (read to decide, like the planted `.pem` keys).
const DECOYS: &[&str] = &[
    "deploy/keys/id_rsa.pub",
    "services/api/config/.env.example",
    "venv/lib/python3.12/site-packages/certifi/cacert.pem",
    "node_modules/tls-fixtures/test/ca.crt",
    "web/certs/chain.pem",
];

/// What the key-or-certificate files hold: the scan reads them to decide.
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n\
                           -----END PRIVATE KEY-----\n";
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nMIIFazCCA1OgAwIBAgIRAIIQz7DSQONZ\n\
                           -----END CERTIFICATE-----\n";

type BenchResult<T> = Result<T, Box<dyn Error>>;

fn main() -> BenchResult<()> {
    let runs = std::env::var("SCAN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .max(1);
    let tmp = tempfile::Builder::new()
        .prefix("agentbox-scan-bench.")
        .tempdir()?;
    let root = fs::canonicalize(tmp.path())?;

    let started = Instant::now();
    let tree = generate(&root)?;
    let generated = started.elapsed();
    // Write the new metadata out now, so background writeback does not overlap the timing.
    std::process::Command::new("sync").status()?;
    assert_eq!(
        tree.files, TOTAL_FILES,
        "generator produced the wrong file count"
    );

    let matcher = Matcher::new(true, &[], &[])?;
    check_scan(&root, &matcher);
    let entries = walk_all(&root)?;
    assert_eq!(
        entries,
        tree.files + tree.dirs,
        "walk and generator disagree"
    );
    let visible = walk_pruned(&root)?;

    // Interleaved: each round runs every measurement once, in a rotating order, so drift
    // (frequency, other load, cache state) hits all of them alike.
    let mut scan_t = Vec::new();
    let mut all_t = Vec::new();
    let mut pruned_t = Vec::new();
    let mut matcher_t = Vec::new();
    let mut linked_t = Vec::new();
    let mut etc_t = Vec::new();
    // A file with other names makes the scan read the tree twice (the second pass finds the
    // other names): timed by declaring one file of the tree linked.
    let linked = {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(root.join("README.md"))?;
        [(m.dev(), m.ino())]
    };
    const KINDS: usize = 6;
    for round in 0..WARMUP_RUNS + runs {
        let mut times = [Duration::ZERO; KINDS];
        for k in 0..KINDS {
            let which = (k + round) % KINDS;
            let t0 = Instant::now();
            match which {
                0 => {
                    std::hint::black_box(secrets::scan(&root, &matcher)?);
                }
                1 => {
                    std::hint::black_box(walk_all(&root)?);
                }
                2 => {
                    std::hint::black_box(walk_pruned(&root)?);
                }
                3 => {
                    std::hint::black_box(Matcher::new(true, &[], &[])?);
                }
                4 => {
                    std::hint::black_box(secrets::scan_roots(&[&root], &matcher, &linked)?);
                }
                _ => {
                    std::hint::black_box(secrets::etc_secrets(Path::new("/etc")));
                }
            }
            times[which] = t0.elapsed();
        }
        if round >= WARMUP_RUNS {
            scan_t.push(times[0]);
            all_t.push(times[1]);
            pruned_t.push(times[2]);
            matcher_t.push(times[3]);
            linked_t.push(times[4]);
            etc_t.push(times[5]);
        }
    }
    let scan = Stats::of(&scan_t);
    let all = Stats::of(&all_t);
    let pruned = Stats::of(&pruned_t);
    let matcher = Stats::of(&matcher_t);
    let linked = Stats::of(&linked_t);
    let etc = Stats::of(&etc_t);
    let etc_found = secrets::etc_secrets(Path::new("/etc"));

    println!("agentbox secret-scan benchmark");
    println!(
        "  tree: {} files, {} dirs at {} (generated in {:.1} s; empty but the .pem/.crt files)",
        tree.files,
        tree.dirs,
        root.display(),
        generated.as_secs_f64()
    );
    println!(
        "  shape: node_modules {NODE_MODULES_FILES} files, target/ (CACHEDIR.TAG) {TARGET_FILES}, \
         .git {GIT_FILES}, sources {} files; max depth {}",
        TOTAL_FILES - NODE_MODULES_FILES - TARGET_FILES - GIT_FILES,
        tree.max_depth
    );
    println!("  entries: {entries} in the whole tree, {visible} outside .git");
    println!(
        "  runs: {WARMUP_RUNS} warm-up + {runs} timed rounds, interleaved; cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("  {:<44} {:>9} {:>9} {:>9}", "(ms)", "min", "median", "p90");
    scan.print("secrets::scan (sequential start, then parallel)");
    all.print("baseline: read_dir walk, all, 1 thread");
    pruned.print("reference: read_dir walk, no .git, 1 thread");
    matcher.print("Matcher::new(true, &[], &[])");
    linked.print("scan, a masked file with 2 names (2 passes)");
    etc.print("etc_secrets(/etc) (as root only)");
    println!(
        "  /etc: {} files and {} directories to mask",
        etc_found.files.len(),
        etc_found.dirs.len()
    );
    println!(
        "  ratio scan / baseline walk (medians): {:.2}   scan / pruned walk: {:.2}",
        scan.median / all.median,
        scan.median / pruned.median
    );
    let verdict = if scan.median <= TARGET_MS {
        "MET"
    } else {
        "MISSED"
    };
    println!(
        "RESULT scan median {:.2} ms (p90 {:.2}) over {TOTAL_FILES} files, warm; target <= {TARGET_MS} ms: {verdict}; \
         scan/baseline {:.2}x",
        scan.median,
        scan.p90,
        scan.median / all.median
    );
    Ok(())
}

/// Panics unless the scan reports exactly the planted secrets and the one `.git`.
fn check_scan(root: &Path, matcher: &Matcher) {
    let report = secrets::scan(root, matcher).expect("the scan refused the tree");
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let found: Vec<String> = report.secrets.iter().map(|f| rel(&f.path)).collect();
    assert_eq!(
        found, PLANTED,
        "the scan did not find exactly the planted secrets"
    );
    let git: Vec<String> = report.git.iter().map(|f| rel(&f.path)).collect();
    assert_eq!(git, [".git"], "the scan did not report exactly one .git");
}

/// Counts every entry, recursing into every directory: the floor for "list the whole tree".
fn walk_all(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        n += 1;
        if entry.file_type()?.is_dir() {
            n += walk_all(&entry.path())?;
        }
    }
    Ok(n)
}

/// Counts the entries outside git's own directory (where the scan looks for secrets only), no
/// matching, one thread.
fn walk_pruned(dir: &Path) -> io::Result<usize> {
    let entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    let mut n = 0;
    for entry in entries {
        n += 1;
        let name = entry.file_name();
        if entry.file_type()?.is_dir() && !PRUNED_DIRS.iter().any(|p| name == *p) {
            n += walk_pruned(&entry.path())?;
        }
    }
    Ok(n)
}

struct Stats {
    min: f64,
    median: f64,
    p90: f64,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Stats {
            min: ms[0],
            median: quantile(&ms, 0.5),
            p90: quantile(&ms, 0.9),
        }
    }

    fn print(&self, what: &str) {
        println!(
            "  {what:<44} {:>9.3} {:>9.3} {:>9.3}",
            self.min, self.median, self.p90
        );
    }
}

/// Linear interpolation between closest ranks, on sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// SplitMix64: a tiny deterministic generator, so every run builds the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Creates files (empty, but for the key-or-certificate files the scan reads to decide) and
/// their directories, counting both.
struct Tree {
    root: PathBuf,
    made: HashSet<PathBuf>,
    files: usize,
    dirs: usize,
    max_depth: usize,
}

impl Tree {
    fn file(&mut self, rel: &str) -> io::Result<()> {
        let path = self.root.join(rel);
        if let Some(parent) = Path::new(rel).parent() {
            self.dir(parent)?;
        }
        fs::File::create_new(&path)?;
        self.files += 1;
        self.max_depth = self.max_depth.max(Path::new(rel).components().count() - 1);
        Ok(())
    }

    fn dir(&mut self, rel: &Path) -> io::Result<()> {
        if rel.as_os_str().is_empty() || self.made.contains(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.dir(parent)?;
        }
        fs::create_dir(self.root.join(rel))?;
        self.made.insert(rel.to_owned());
        self.dirs += 1;
        Ok(())
    }
}

const DIR_NAMES: &[&str] = &[
    "src",
    "lib",
    "core",
    "utils",
    "components",
    "api",
    "models",
    "views",
    "handlers",
    "internal",
    "pkg",
    "cmd",
    "tests",
    "fixtures",
    "assets",
    "styles",
    "hooks",
    "services",
    "config",
    "docs",
    "examples",
    "proto",
    "schemas",
    "migrations",
    "pages",
    "store",
    "common",
    "parser",
    "server",
    "client",
    "widgets",
    "icons",
    "i18n",
    "scripts",
];
const STEMS: &[&str] = &[
    "index",
    "main",
    "mod",
    "lib",
    "utils",
    "helpers",
    "types",
    "client",
    "server",
    "handler",
    "model",
    "view",
    "router",
    "store",
    "reducer",
    "service",
    "constants",
    "errors",
    "test_api",
    "setup",
    "schema",
    "parser",
    "lexer",
    "button",
    "modal",
    "table",
    "layout",
    "README",
];
const SOURCE_EXTS: &[&str] = &[
    "rs", "ts", "tsx", "js", "py", "go", "md", "json", "toml", "yaml", "css", "html", "c", "h",
    "txt", "snap", "sql", "proto", "svg", "png",
];
const JS_EXTS: &[&str] = &["js", "js", "js", "d.ts", "js.map", "mjs", "cjs", "json"];

/// Builds the whole tree: exactly `TOTAL_FILES` files.
fn generate(root: &Path) -> io::Result<Tree> {
    let mut tree = Tree {
        root: root.to_owned(),
        made: HashSet::new(),
        files: 0,
        dirs: 0,
        max_depth: 0,
    };
    let mut rng = Rng(0x00a9_e17b_0c5e_ed01);
    for rel in PLANTED.iter().chain(DECOYS) {
        tree.file(rel)?;
        let ext = Path::new(rel).extension().and_then(|e| e.to_str());
        if matches!(ext, Some("pem" | "crt")) {
            // A CA bundle the size of certifi's (about 140 certificates, 280 kB).
            let body = match PLANTED.contains(rel) {
                true => PRIVATE_KEY.to_owned(),
                false if rel.ends_with("cacert.pem") => CERTIFICATE.repeat(140 * 20),
                false => CERTIFICATE.repeat(3),
            };
            fs::write(tree.root.join(rel), body)?;
        }
    }
    for rel in [
        "Cargo.toml",
        "Cargo.lock",
        "package.json",
        "package-lock.json",
        ".gitignore",
        ".editorconfig",
        "README.md",
        "LICENSE",
        ".github/workflows/ci.yml",
        "target/CACHEDIR.TAG",
        "target/.rustc_info.json",
        ".git/HEAD",
        ".git/config",
        ".git/description",
        ".git/index",
    ] {
        tree.file(rel)?;
    }
    let node_budget =
        tree.files + NODE_MODULES_FILES - count_under(PLANTED, DECOYS, "node_modules/");
    node_modules(&mut tree, &mut rng, "node_modules", node_budget, 0)?;
    let target_budget = tree.files + TARGET_FILES - count_under(PLANTED, DECOYS, "target/") - 2;
    cargo_target(&mut tree, &mut rng, target_budget)?;
    let git_budget = tree.files + GIT_FILES - count_under(PLANTED, DECOYS, ".git/") - 4;
    git_dir(&mut tree, &mut rng, git_budget)?;
    let tops = [
        "src", "crates", "web", "services", "docs", "tests", "scripts", "vendor", "tools", "python",
    ];
    let mut i = 0;
    while tree.files < TOTAL_FILES {
        let top = match i / tops.len() {
            0 => tops[i].to_owned(),
            n => format!("{}/more{n}", tops[i % tops.len()]),
        };
        let budget = (tree.files + rng.range(2_000, 6_000)).min(TOTAL_FILES);
        source_dir(&mut tree, &mut rng, &top, 1, budget)?;
        i += 1;
    }
    Ok(tree)
}

fn count_under(a: &[&str], b: &[&str], prefix: &str) -> usize {
    a.iter().chain(b).filter(|p| p.starts_with(prefix)).count()
}

/// A source directory: some files, then subdirectories that get fewer and rarer with depth.
fn source_dir(
    tree: &mut Tree,
    rng: &mut Rng,
    rel: &str,
    depth: usize,
    budget: usize,
) -> io::Result<()> {
    let files = rng.range(3, 24);
    for i in 0..files {
        if tree.files >= budget {
            return Ok(());
        }
        let name = format!("{}{i}.{}", rng.pick(STEMS), rng.pick(SOURCE_EXTS));
        tree.file(&format!("{rel}/{name}"))?;
    }
    let subdirs = if depth >= 9 {
        0
    } else {
        rng.range(0, 7usize.saturating_sub(depth / 2))
    };
    for i in 0..subdirs {
        if tree.files >= budget {
            return Ok(());
        }
        let sub = format!("{rel}/{}{i}", rng.pick(DIR_NAMES));
        source_dir(tree, rng, &sub, depth + 1, budget)?;
    }
    Ok(())
}

/// Packages with package.json, lib/ and dist/ files, some scoped, some with nested node_modules.
fn node_modules(
    tree: &mut Tree,
    rng: &mut Rng,
    rel: &str,
    budget: usize,
    nest: usize,
) -> io::Result<()> {
    let mut pkg = 0;
    while tree.files < budget {
        let name = if rng.below(5) == 0 {
            format!("@scope{}/pkg-{pkg}", rng.below(20))
        } else {
            format!("pkg-{pkg}")
        };
        let base = format!("{rel}/{name}");
        for f in ["package.json", "README.md", "LICENSE", "index.js"] {
            if tree.files < budget {
                tree.file(&format!("{base}/{f}"))?;
            }
        }
        for sub in ["lib", "dist", "dist/esm", "lib/internal"] {
            for i in 0..rng.range(0, 12) {
                if tree.files < budget {
                    let ext = rng.pick(JS_EXTS);
                    tree.file(&format!("{base}/{sub}/{}{i}.{ext}", rng.pick(STEMS)))?;
                }
            }
        }
        if nest < 2 && rng.below(10) == 0 {
            let inner = (tree.files + rng.range(5, 60)).min(budget);
            node_modules(tree, rng, &format!("{base}/node_modules"), inner, nest + 1)?;
        }
        pkg += 1;
        if nest > 0 && pkg >= 6 {
            break;
        }
    }
    Ok(())
}

/// A cargo `target/`: deps, build script outputs, fingerprints and incremental caches.
fn cargo_target(tree: &mut Tree, rng: &mut Rng, budget: usize) -> io::Result<()> {
    let mut i = 0;
    while tree.files < budget {
        let krate = format!("crate_{i}-{:016x}", rng.next());
        let profile = if rng.below(4) == 0 {
            "release"
        } else {
            "debug"
        };
        let picks = [
            format!("target/{profile}/deps/lib{krate}.rlib"),
            format!("target/{profile}/deps/lib{krate}.rmeta"),
            format!("target/{profile}/deps/{krate}.d"),
            format!("target/{profile}/.fingerprint/{krate}/lib-{i}.json"),
            format!("target/{profile}/.fingerprint/{krate}/dep-lib-{i}"),
            format!("target/{profile}/build/{krate}/output"),
            format!("target/{profile}/build/{krate}/out/gen_{i}.rs"),
            format!("target/{profile}/incremental/{krate}/s-{i}/query-cache.bin"),
            format!("target/{profile}/incremental/{krate}/s-{i}/dep-graph.bin"),
            format!("target/{profile}/incremental/{krate}/s-{i}/work-products.bin"),
        ];
        for p in picks {
            if tree.files < budget {
                tree.file(&p)?;
            }
        }
        i += 1;
    }
    Ok(())
}

/// A `.git` with hooks, refs, logs and loose objects in the 256 fan-out directories.
fn git_dir(tree: &mut Tree, rng: &mut Rng, budget: usize) -> io::Result<()> {
    for hook in [
        "pre-commit.sample",
        "pre-push.sample",
        "commit-msg.sample",
        "update.sample",
    ] {
        tree.file(&format!(".git/hooks/{hook}"))?;
    }
    tree.file(".git/refs/heads/main")?;
    tree.file(".git/logs/HEAD")?;
    while tree.files < budget {
        let id = format!(
            "{:016x}{:016x}{:08x}",
            rng.next(),
            rng.next(),
            rng.next() as u32
        );
        tree.file(&format!(".git/objects/{}/{}", &id[..2], &id[2..]))?;
    }
    Ok(())
}
