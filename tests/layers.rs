//! The architecture, checked: data flows one way (ARCHITECTURE.md). No module of `src/` imports
//! a module that imports it back (directly or round a longer loop), and the pure layers
//! (`model`, then `plan`, `steps`, `admission`, `report`) import nothing above them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the crate (`controller::reconcile`, `model`, ...) with its source, tests cut off.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix("src").expect("under src").with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().to_string()).collect();
            if parts.last().map(String::as_str) == Some("mod") {
                parts.pop();
            }
            let module = match parts.join("::").as_str() {
                "lib" | "main" => "crate".to_string(),
                other => other.to_string(),
            };
            let text = std::fs::read_to_string(&path).expect("read source");
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default()
                .to_string();
            out.insert(module, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), &mut out);
    out
}

/// The paths a module imports, as written after `crate::` or `super::` (groups expanded).
fn imported_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let base: Vec<String> = module
        .split("::")
        .filter(|p| *p != "crate")
        .map(str::to_string)
        .collect();
    let mut paths = Vec::new();
    for statement in code.split(';') {
        let Some(start) = statement.find("use ") else { continue };
        let text: String = statement[start + 4..].chars().filter(|c| !c.is_whitespace()).collect();
        let (prefix, items) = match text.split_once("::{") {
            Some((prefix, rest)) => (prefix.to_string(), rest.trim_end_matches('}').to_string()),
            None => (text.clone(), String::new()),
        };
        let mut segments: Vec<String> = prefix.split("::").map(str::to_string).collect();
        let mut root = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") => base[..base.len().saturating_sub(1)].to_vec(),
            _ => continue,
        };
        segments.remove(0);
        while segments.first().map(String::as_str) == Some("super") {
            root.pop();
            segments.remove(0);
        }
        root.extend(segments);
        if items.is_empty() {
            paths.push(root);
        } else {
            for item in items.split(',').filter(|i| !i.is_empty() && *i != "self") {
                let mut path = root.clone();
                path.extend(
                    item.split("::")
                        .map(|s| s.split(" as ").next().unwrap_or(s).to_string()),
                );
                paths.push(path);
            }
        }
    }
    paths
}

/// Module → the other modules it imports (the longest existing module named by each path).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &modules {
        for path in imported_paths(module, code) {
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            let Some(target) = target else { continue };
            let related = target == *module
                || module.starts_with(&format!("{target}::"))
                || target.starts_with(&format!("{module}::"));
            if !related {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

fn find_loop(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = import_graph();
    assert!(graph.len() > 20, "the import graph was read: {graph:?}");
    assert!(
        graph["controller::reconcile"].contains("plan::pass"),
        "imports are found"
    );
    if let Some(found) = find_loop(&graph) {
        panic!("import loop: {}", found.join(" -> "));
    }
}

/// The modules that never touch a client, the clock or the network (ARCHITECTURE.md).
fn is_pure(module: &str) -> bool {
    let top = module.split("::").next().unwrap_or_default();
    matches!(top, "model" | "plan" | "steps" | "report")
        || matches!(module, "admission::decide" | "admission::patch" | "admission::review")
}

#[test]
fn pure_layers_import_only_pure_layers_and_model_nothing_else() {
    let graph = import_graph();
    let mut problems = Vec::new();
    for (module, targets) in &graph {
        for target in targets {
            let model_reaches_out = module.starts_with("model") && !target.starts_with("model");
            if (is_pure(module) && !is_pure(target)) || model_reaches_out {
                problems.push(format!("{module} imports {target}"));
            }
        }
    }
    assert!(problems.is_empty(), "pure layers reach up: {problems:?}");
}

#[test]
fn the_loop_finder_finds_a_loop() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["c".to_string()].into()),
        ("c".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(
        find_loop(&graph).map(|l| l.join(" -> ")).as_deref(),
        Some("a -> b -> c -> a")
    );
    let paths = imported_paths(
        "controller::reconcile",
        "use super::{actions, apply::ensure};\nuse crate::model::keys;",
    );
    assert_eq!(
        paths,
        vec![
            vec!["controller".to_string(), "actions".to_string()],
            vec!["controller".to_string(), "apply".to_string(), "ensure".to_string()],
            vec!["model".to_string(), "keys".to_string()],
        ]
    );
}
