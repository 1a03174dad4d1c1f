//! The README is true of the code. Every command it shows (in `sh` blocks and in inline code)
//! is accounted for, or this test fails and names it:
//!
//! - run here, in README order, against two in-process clusters (kubectl contexts `a` and
//!   `b`), with the binary being tested as `volsync-dr` on the PATH;
//! - run by CI (`.ci/run` holds it verbatim);
//! - run by the real tier (the named file runs it);
//! - or said not runnable here, and why.
//!
//! Patterns with placeholders (`F`, `[--flag X]`) and every `volsync-dr` command are checked
//! against `--help`: each subcommand and flag the README names exists. The layout block names
//! every module and test file.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use testkit::pair::{ClusterPair, PRIMARY, SECONDARY};
use tokio::process::Command;

/// How a command of the README is proven.
#[derive(Clone, Copy, Debug)]
enum Way {
    /// Run by this test; its output must contain the text given (empty: anything).
    Here(&'static str),
    /// Every `&&`-separated part is in `.ci/run` verbatim.
    Ci,
    /// The file given runs it (it contains the text given).
    RealTier(&'static str, &'static str),
    /// Cannot run on this machine, for the reason given.
    #[allow(dead_code)] // the reason is for the reader of this table
    NotHere(&'static str),
}

/// The first rule whose prefix starts the command decides.
const RULES: &[(&str, Way)] = &[
    ("volsync-dr certs --out-dir", Way::Here("caBundle")),
    (
        "volsync-dr crd | kubectl apply -f -",
        Way::Here("drpolicies.volsync-dr.io"),
    ),
    ("volsync-dr doctor --cluster-name", Way::Here("OK    cluster-b  access")),
    ("volsync-dr status --cluster-name", Way::Here("data")),
    // Run here as `adapt` says (the real tier runs them as written, as its install).
    (
        "kubectl --context a apply -k deploy/overlays/cluster-a",
        Way::Here("deployment.apps/volsync-dr"),
    ),
    (
        "kubectl --context a -n volsync-dr create secret generic",
        Way::Here("created"),
    ),
    (
        "kubectl --context a -n volsync-dr create secret tls",
        Way::Here("created"),
    ),
    (
        "kubectl --context a patch mutatingwebhookconfiguration",
        Way::Here("patched"),
    ),
    ("kubectl --context a annotate pvc data", Way::Here("annotated")),
    ("kubectl delete -k deploy/overlays/cluster-a", Way::Here("deleted")),
    (
        "kubectl apply -f deploy/crds/drpolicy.yaml",
        Way::Here("drpolicies.volsync-dr.io"),
    ),
    (
        "kubectl kustomize deploy/webhook/base",
        Way::Here("MutatingWebhookConfiguration"),
    ),
    (
        "kubectl annotate pvc data volsync-dr.io/schedule=",
        Way::Here("annotated"),
    ),
    ("kubectl get pvc -o yaml", Way::Here("volsync-dr.io/schedule")),
    ("kubectl get drpolicies", Way::Here("shop-hourly")),
    ("kubectl get pvc P -o custom-columns=", Way::Here("ROLE")),
    (
        "kubectl get events --field-selector involvedObject.name=P",
        Way::Here(""),
    ),
    (
        "python3 -m pip install -r tests/requirements.txt && cargo test",
        Way::Ci,
    ),
    ("cargo fmt", Way::Ci),
    ("cargo clippy", Way::Ci),
    ("cargo build && cargo run -p testkit --bin two-clusters", Way::Ci),
    ("cargo run -p testkit --bin two-clusters", Way::Ci),
    (
        "kubectl --context b -n volsync-dr create token",
        Way::RealTier("tests/testkit/src/realk8s.rs", r#""create","token""#),
    ),
    (
        "kubectl create token",
        Way::RealTier("tests/testkit/src/realk8s.rs", r#""create","token""#),
    ),
    (
        "cargo run -p testkit --bin test-cluster",
        Way::NotHere(
            "a cargo run inside the test run would rebuild the binary the other tests are running; tests/kubectl.rs drives the same server",
        ),
    ),
    (
        "cargo bench",
        Way::NotHere("benchmarks take minutes each: run by hand, their numbers are in Performance"),
    ),
    ("docker build", Way::NotHere("no Docker engine on this machine")),
    (
        "helm ",
        Way::NotHere("no helm binary here: tests/helm.rs renders and lints the chart with helm-python-sdk"),
    ),
];

/// Programs whose commands the README shows.
const PROGRAMS: &[&str] = &["volsync-dr", "kubectl", "cargo", "helm", "docker", "python3"];

#[derive(Debug, PartialEq)]
struct Found {
    line: usize,
    text: String,
    /// From a fenced block: a `sh` line, a usage line of a plain block, or a whole `yaml`
    /// block (`yaml` is true, `text` is its body).
    block: bool,
    yaml: bool,
}

/// In README order: commands in `sh` blocks (a line each), `volsync-dr` lines of plain blocks
/// (usage), `yaml` blocks, and inline code spans that start with a program (a span may cross
/// lines).
fn extract(readme: &str) -> Vec<Found> {
    let mut found = Vec::new();
    // (language, first line, indentation of the fence, body)
    let mut fence: Option<(String, usize, usize, String)> = None;
    let mut prose = String::new();
    let mut prose_lines: Vec<usize> = Vec::new();
    for (i, line) in readme.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match fence.take() {
                None => fence = Some((lang.trim().to_string(), n, indent, String::new())),
                Some((lang, start, _, body)) => {
                    if lang == "yaml" {
                        found.push(Found {
                            line: start,
                            text: body,
                            block: true,
                            yaml: true,
                        });
                    }
                    // A block ends a paragraph: no inline span continues across it.
                    prose.push_str("\n\n");
                    prose_lines.extend([n, n]);
                }
            }
            continue;
        }
        match &mut fence {
            Some((lang, _, fence_indent, body)) => {
                let cut = (*fence_indent).min(indent);
                body.push_str(&line[cut..]);
                body.push('\n');
                let command = trimmed.trim();
                if (lang == "sh" && !command.is_empty() && !command.starts_with('#'))
                    || (lang.is_empty() && command.starts_with("volsync-dr "))
                {
                    found.push(Found {
                        line: n,
                        text: command.to_string(),
                        block: true,
                        yaml: false,
                    });
                }
            }
            None => {
                prose.push_str(line);
                prose.push('\n');
                prose_lines.push(n);
            }
        }
    }
    let line_of = |offset: usize| -> usize {
        let newlines = prose[..offset].matches('\n').count();
        prose_lines.get(newlines).copied().unwrap_or(0)
    };
    let mut rest = 0;
    while let Some(open) = prose[rest..].find('`') {
        let start = rest + open + 1;
        let Some(close) = prose[start..].find('`') else { break };
        let span = &prose[start..start + close];
        if span.contains("\n\n") {
            // Not a span: an unpaired backtick; go on from the next one.
            rest = start;
            continue;
        }
        rest = start + close + 1;
        let text = span.split_whitespace().collect::<Vec<_>>().join(" ");
        let program = text.split(' ').next().unwrap_or_default();
        if PROGRAMS.contains(&program) {
            found.push(Found {
                line: line_of(start),
                text,
                block: false,
                yaml: false,
            });
        }
    }
    found.sort_by_key(|f| f.line);
    found
}

/// Names a subcommand or the program, no arguments (`volsync-dr run`, `kubectl create token`).
fn is_reference(text: &str) -> bool {
    let words: Vec<&str> = text.split(' ').collect();
    words.len() <= 3
        && words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        && !words.iter().skip(1).any(|w| w.starts_with('-'))
}

/// Has placeholders: `[optional]`, `a|b`, or an upper-case word standing for a value.
fn is_pattern(text: &str) -> bool {
    text.contains('[')
        || text.contains('<')
        || text.split(' ').any(|w| w.len() > 1 && w.contains('|'))
        || text
            .split([' ', '=', ':'])
            .any(|w| w.len() <= 6 && !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase()))
}

fn rule(text: &str) -> Option<Way> {
    RULES
        .iter()
        .find(|(prefix, _)| text.starts_with(prefix))
        .map(|(_, way)| *way)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_volsync-dr")
}

/// `volsync-dr SUB --help` (or the top level's), for the flag check.
fn help(subcommand: Option<&str>) -> Result<String, String> {
    let mut args: Vec<&str> = subcommand.into_iter().collect();
    args.push("--help");
    let out = std::process::Command::new(binary())
        .args(&args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each `volsync-dr` subcommand and flag in `text` exists.
fn check_flags(text: &str) -> Result<(), String> {
    for part in text.split('|').map(str::trim) {
        let mut words = part.split(' ').filter(|w| !w.is_empty());
        if words.next() != Some("volsync-dr") {
            continue;
        }
        let subcommand = words.next();
        let help =
            help(subcommand).map_err(|e| format!("`volsync-dr {}` does not exist: {e}", subcommand.unwrap_or("")))?;
        for flag in part
            .split([' ', '[', ']'])
            .filter(|w| w.starts_with('-') && w.len() > 1 && *w != "-")
            .map(|w| w.split('=').next().unwrap_or(w))
        {
            let named = help
                .split([' ', ',', '\n', '='])
                .any(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-') == flag);
            if !named {
                return Err(format!(
                    "`{flag}` is not a flag of `volsync-dr {}`",
                    subcommand.unwrap_or("")
                ));
            }
        }
    }
    Ok(())
}

/// The place the README's commands run: a directory holding `deploy/` (a link), a kubeconfig
/// with contexts `a` (current) and `b`, `b.kubeconfig` (what step 3 makes), and `volsync-dr`
/// on the PATH.
struct Shell {
    dir: tempfile::TempDir,
    path: String,
    kubeconfig: PathBuf,
}

impl Shell {
    async fn new(pair: &ClusterPair) -> Shell {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(root().join("deploy"), dir.path().join("deploy")).expect("link deploy");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        std::os::unix::fs::symlink(binary(), bin.join("volsync-dr")).expect("link binary");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        for (context, cluster) in [("a", PRIMARY), ("b", SECONDARY)] {
            pair.server(cluster)
                .write_kubeconfig(&dir.path().join(format!("{context}.only")), context)
                .expect("kubeconfig");
        }
        // What step 3 makes: each cluster's kubeconfig, for the other side.
        for (file, cluster) in [("a.kubeconfig", PRIMARY), ("b.kubeconfig", SECONDARY)] {
            std::fs::copy(pair.kubeconfig(cluster), dir.path().join(file)).expect("peer kubeconfig");
        }
        let merged = std::process::Command::new("kubectl")
            .args(["config", "view", "--flatten"])
            .env("KUBECONFIG", format!("{0}/a.only:{0}/b.only", dir.path().display()))
            .output()
            .expect("kubectl config view");
        assert!(
            merged.status.success(),
            "merge kubeconfigs: {}",
            String::from_utf8_lossy(&merged.stderr)
        );
        let kubeconfig = dir.path().join("config");
        std::fs::write(&kubeconfig, &merged.stdout).expect("write kubeconfig");
        Shell { dir, path, kubeconfig }
    }

    fn command(&self, text: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", text])
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join(".kube-cache"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Run to the end (at most 60 s); a watch (`-w`) runs 3 s, must not have failed by then,
    /// and gives what it printed so far.
    async fn run(&self, text: &str) -> Result<String, String> {
        use tokio::io::AsyncReadExt;
        let watch = text.ends_with(" -w");
        let mut child = self.command(text).spawn().map_err(|e| format!("start bash: {e}"))?;
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let read_out = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf).await;
            buf
        });
        let read_err = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            buf
        });
        let limit = if watch {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(60)
        };
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => Some(status.map_err(|e| e.to_string())?),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        let out = String::from_utf8_lossy(&read_out.await.unwrap_or_default()).into_owned();
        let err = String::from_utf8_lossy(&read_err.await.unwrap_or_default()).into_owned();
        match status {
            None if watch => Ok(out + &err),
            None => Err(format!("still running after {limit:?}\n{out}\n{err}")),
            Some(s) if s.success() => Ok(out + &err),
            Some(s) => Err(format!("exit {:?}\n{out}\n{err}", s.code())),
        }
    }
}

/// What the README's placeholders stand for when a command is run here, and what the
/// in-process API server lacks: the OpenAPI documents kubectl validates against, and protobuf
/// bodies (which `kubectl create secret` sends; it is sent as JSON through `apply` instead).
fn adapt(text: &str, ca_lines: &std::collections::BTreeMap<String, String>) -> String {
    let context = if text.starts_with("kubectl --context b") {
        "b"
    } else {
        "a"
    };
    let ca_line = ca_lines.get(&format!("certs-{context}")).map_or("", String::as_str);
    let mut text = text.replace("<line>", ca_line);
    for (from, to) in [(" pvc P ", " pvc data "), ("name=P ", "name=data ")] {
        text = text.replace(from, to);
    }
    if text.contains(" apply -k ") {
        text.push_str(" --validate=false");
    }
    if text.contains(" delete -k ") {
        // The in-process server empties a deleted namespace at once (a real one does so after
        // kubectl has deleted what is in it), so kubectl finds those already gone.
        text.push_str(" --ignore-not-found");
    }
    if text.contains(" create secret ") {
        text.push_str(&format!(
            " --dry-run=client -o json | kubectl --context {context} apply --validate=false -f -"
        ));
    }
    text
}

/// The README shows cluster a's install commands and says b's are alike: the same with the
/// two clusters' names swapped.
fn for_cluster_b(text: &str) -> Option<String> {
    const MIRRORED: &[&str] = &[
        "kubectl --context a apply -k",
        "kubectl --context a -n volsync-dr create secret",
        "kubectl --context a patch mutatingwebhookconfiguration",
        "volsync-dr certs --out-dir certs-a",
    ];
    MIRRORED.iter().any(|p| text.starts_with(p)).then(|| {
        text.replace("--context a", "--context b")
            .replace("cluster-b", "\u{0}")
            .replace("cluster-a", "cluster-b")
            .replace('\u{0}', "cluster-a")
            .replace("certs-a", "certs-b")
            .replace("b.kubeconfig", "a.kubeconfig")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_in_the_readme_runs_or_is_accounted_for() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let found = extract(&readme);
    assert!(
        found.len() > 30,
        "found only {} commands: is the extraction broken?",
        found.len()
    );

    let pair = ClusterPair::start().await;
    // What the README assumes exists: a PVC `data` to protect, a namespace `shop`.
    pair.create(
        PRIMARY,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    pair.create(
        PRIMARY,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    let shell = Shell::new(&pair).await;

    let mut wrong = Vec::new();
    let mut ran = 0;
    // The caBundle line each `volsync-dr certs` printed, by its output directory.
    let mut ca_lines = std::collections::BTreeMap::new();
    for f in &found {
        if f.yaml {
            // Each YAML block is applied here (the DRPolicy, the PVC that reads a kept copy).
            let file = shell.dir.path().join(format!("block-{}.yaml", f.line));
            std::fs::write(&file, &f.text).expect("write block");
            match shell
                .run(&format!("kubectl apply --validate=false -f {}", file.display()))
                .await
            {
                Ok(_) => ran += 1,
                Err(e) => wrong.push(format!("README.md:{}: the YAML block does not apply: {e}", f.line)),
            }
            continue;
        }
        let at = format!("README.md:{}: `{}`", f.line, f.text);
        let names_volsync_dr =
            f.text.starts_with("volsync-dr") || f.text.contains("| volsync-dr") || f.text.contains("&& volsync-dr");
        if names_volsync_dr && let Err(e) = check_flags(&f.text) {
            wrong.push(format!("{at}: {e}"));
            continue;
        }
        match rule(&f.text) {
            Some(Way::Here(expect)) => {
                for command in std::iter::once(f.text.clone()).chain(for_cluster_b(&f.text)) {
                    let text = adapt(&command, &ca_lines);
                    match shell.run(&text).await {
                        Ok(out) if out.contains(expect) => {
                            ran += 1;
                            if let Some(dir) = command.strip_prefix("volsync-dr certs --out-dir ") {
                                // Its standard output is that one line.
                                let line = out.lines().next().unwrap_or_default();
                                ca_lines
                                    .insert(dir.split(' ').next().unwrap_or_default().to_string(), line.to_string());
                            }
                        }
                        Ok(out) => wrong.push(format!(
                            "{at} as `{text}`: ran, but its output lacks {expect:?}:\n{out}"
                        )),
                        Err(e) => wrong.push(format!("{at} as `{text}`: failed here: {e}")),
                    }
                }
            }
            Some(Way::Ci) => {
                for part in f.text.split(" && ") {
                    let part = part.trim();
                    let in_ci = match part.strip_prefix("python3 -m pip install") {
                        Some(args) => ci.contains("python3 -m pip install") && ci.contains(args.trim()),
                        None => ci.contains(part),
                    };
                    if !in_ci {
                        wrong.push(format!("{at}: `{part}` is not what .ci/run runs"));
                    }
                }
            }
            Some(Way::RealTier(file, needle)) => {
                let source: String = std::fs::read_to_string(root().join(file))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                if !source.contains(needle) {
                    wrong.push(format!("{at}: {file} no longer runs it ({needle:?})"));
                }
            }
            Some(Way::NotHere(_)) => {}
            None if is_reference(&f.text) => {
                let words: Vec<&str> = f.text.split(' ').collect();
                let exists = match words[0] {
                    "volsync-dr" => help(words.get(1).copied()).is_ok(),
                    "kubectl" => shell.run(&format!("{} --help", f.text)).await.is_ok(),
                    _ => true,
                };
                if !exists {
                    wrong.push(format!("{at}: no such command"));
                }
            }
            None if is_pattern(&f.text) => {}
            None => wrong.push(format!(
                "{at}: neither run by this test, by CI or by the real tier, nor said not runnable here (add a rule)"
            )),
        }
    }

    assert!(
        wrong.is_empty(),
        "the README and the code disagree:\n- {}",
        wrong.join("\n- ")
    );
    assert!(ran >= 15, "only {ran} commands ran here");
    eprintln!("{} commands found, {ran} run here", found.len());
}

/// Every file of `dir` with extension `ext`, by file name.
fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[test]
fn the_layout_names_every_module_test_and_bench() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme.find("```\nsrc/\n").expect("the layout block starts with src/");
    let block = &readme[start..start + readme[start + 3..].find("```").expect("end") + 3];
    let mut missing = Vec::new();
    let mut wanted: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root().join("src")).expect("src").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        wanted.push(if entry.path().is_dir() {
            format!("{name}/")
        } else {
            name
        });
    }
    wanted.extend(files(&root().join("tests"), ".rs"));
    wanted.extend(
        files(&root().join("benches"), ".rs")
            .into_iter()
            .map(|b| format!("benches/{b}")),
    );
    for name in wanted {
        let listed = block
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str()));
        if !listed {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "README's Layout does not name: {missing:?}");
}

#[test]
fn the_extraction_finds_blocks_spans_across_lines_and_yaml() {
    let text = "intro `volsync-dr run` and `kubectl --context a\n  annotate pvc x`.\n\n```sh\ncargo build\n```\n\n  ```yaml\n  kind: X\n  spec:\n    a: 1\n  ```\n`not a command`\n";
    let found = extract(text);
    let texts: Vec<&str> = found.iter().map(|f| f.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "volsync-dr run",
            "kubectl --context a annotate pvc x",
            "cargo build",
            "kind: X\nspec:\n  a: 1\n"
        ]
    );
    assert_eq!(found[1].line, 1);
    assert!(found[2].block && !found[2].yaml);
    assert!(found[3].yaml);
    assert!(is_reference("volsync-dr run") && !is_reference("volsync-dr run --x"));
    assert!(is_pattern("volsync-dr status --peer-kubeconfig F") && !is_pattern("kubectl get pvc -o yaml"));
    assert!(is_pattern("kubectl create secret|deployment"));
}
