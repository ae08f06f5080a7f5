//! The metric catalog is the only source of metric names (STYLE item 7): names follow
//! `kioskd_<subsystem>_<name>` with `_total` on counters and `_seconds` on durations,
//! code records only catalog constants, and the dashboards and alert rules query only
//! catalog names. Plain file checks: no server, no Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CATALOG: &str = include_str!("../../actors/src/catalog.rs");
const TELEMETRY: &str = include_str!("../../src/telemetry.rs");

/// Catalog names allowed to break the `kioskd_<subsystem>_<name>` shape, with why.
/// Names allowed to break the `kioskd_<subsystem>_<name>` shape, with the reason (none
/// now: `kioskd_devices` became `kioskd_devices_by_status` before any deployment).
const SHAPE_EXCEPTIONS: &[(&str, &str)] = &[];

/// `kioskd_*` words in source that are not metrics, with what they are.
const NOT_METRICS: &[(&str, &str)] = &[
    ("kioskd_sid", "session cookie name (src/identity.rs)"),
    (
        "kioskd_pre",
        "sign-in-in-progress cookie name (src/identity.rs)",
    ),
    (
        "kioskd_op",
        "operator console cookie name (src/http/authz.rs)",
    ),
];

/// Label names a catalog entry may declare: each has a small, fixed set of values.
const BOUNDED_LABELS: &[&str] = &[
    "reason",
    "status",
    "outcome",
    "route",
    "kind",
    "op",
    "source",
    "channel",
    "billing_mode",
    "deadline",
    "transport",
    "dialect",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone)]
struct Metric {
    konst: String,
    name: String,
    kind: Kind,
    doc: String,
}

/// Reads `/// Kind: doc` comments followed by `pub const NAME: &str = "kioskd_...";`.
fn parse_catalog(src: &str) -> Result<Vec<Metric>, String> {
    let mut out = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let line = line.trim();
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub const ") {
            let (konst, rest) = rest
                .split_once(':')
                .ok_or_else(|| format!("line {}: no type on const", i + 1))?;
            let name = rest
                .split('"')
                .nth(1)
                .ok_or_else(|| format!("line {}: const {konst} is not a string literal", i + 1))?;
            let text = doc.join(" ");
            let kind = if text.starts_with("Counter:") {
                Kind::Counter
            } else if text.starts_with("Gauge:") {
                Kind::Gauge
            } else if text.starts_with("Histogram:") {
                Kind::Histogram
            } else {
                return Err(format!(
                    "{konst}: doc comment must start with Counter:, Gauge: or Histogram:, got {text:?}"
                ));
            };
            out.push(Metric {
                konst: konst.trim().to_string(),
                name: name.to_string(),
                kind,
                doc: text,
            });
        }
        if !line.starts_with("///") {
            doc.clear();
        }
    }
    Ok(out)
}

fn catalog() -> Vec<Metric> {
    let m = parse_catalog(CATALOG).expect("catalog parses");
    assert!(
        m.len() >= 20,
        "suspiciously few catalog entries: {}",
        m.len()
    );
    m
}

fn catalog_names() -> BTreeSet<String> {
    catalog().into_iter().map(|m| m.name).collect()
}

/// Names that are exported with `_bucket` series: the histograms `src/telemetry.rs`
/// gives buckets. Every other histogram is rendered as a summary (`quantile` label).
fn bucketed() -> BTreeSet<String> {
    let consts: BTreeMap<String, String> =
        catalog().into_iter().map(|m| (m.konst, m.name)).collect();
    TELEMETRY
        .split("Matcher::Full(")
        .skip(1)
        .filter_map(|rest| {
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let konst = path.rsplit("::").next()?;
            consts.get(konst).cloned()
        })
        .collect()
}

/// Problems with the names, kinds and labels of catalog entries.
fn naming_problems(metrics: &[Metric]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let mut consts = BTreeSet::new();
    for m in metrics {
        if !names.insert(m.name.clone()) {
            problems.push(format!("{}: declared twice", m.name));
        }
        if !consts.insert(m.konst.clone()) {
            problems.push(format!("{}: constant declared twice", m.konst));
        }
        let Some(rest) = m.name.strip_prefix("kioskd_") else {
            problems.push(format!("{}: does not start with kioskd_", m.name));
            continue;
        };
        let parts: Vec<&str> = rest.split('_').collect();
        let well_formed = parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && p.starts_with(|c: char| c.is_ascii_lowercase())
        });
        if !well_formed {
            problems.push(format!(
                "{}: words must be lowercase letters and digits joined by single underscores",
                m.name
            ));
        }
        let exception = SHAPE_EXCEPTIONS.iter().any(|(n, _)| *n == m.name);
        if parts.len() < 2 && !exception {
            problems.push(format!("{}: not kioskd_<subsystem>_<name>", m.name));
        }
        let total = m.name.ends_with("_total");
        match m.kind {
            Kind::Counter if !total => {
                problems.push(format!("{}: a counter must end in _total", m.name))
            }
            Kind::Gauge | Kind::Histogram if total => {
                problems.push(format!("{}: only counters end in _total", m.name))
            }
            _ => {}
        }
        let base = m.name.strip_suffix("_total").unwrap_or(&m.name);
        let of_seconds = m.doc.contains("seconds");
        if m.kind == Kind::Histogram && of_seconds && !base.ends_with("_seconds") {
            problems.push(format!(
                "{}: a histogram of seconds must end in _seconds",
                m.name
            ));
        }
        if m.kind == Kind::Counter && of_seconds && !m.name.ends_with("_seconds_total") {
            problems.push(format!(
                "{}: a counter of seconds must end in _seconds_total",
                m.name
            ));
        }
        if base.ends_with("_seconds") && !of_seconds {
            problems.push(format!(
                "{}: named _seconds but its doc does not say it measures seconds",
                m.name
            ));
        }
        for label in backticked_after_by(&m.doc) {
            if !BOUNDED_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{}: label `{label}` is not in the bounded label list",
                    m.name
                ));
            }
        }
    }
    problems
}

/// Label names a doc comment declares: the backticked words after "by".
fn backticked_after_by(doc: &str) -> Vec<String> {
    let Some((_, after)) = doc.split_once(" by ") else {
        return Vec::new();
    };
    after
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every maximal `kioskd_[a-z0-9_]+` word in `text` that is not part of a longer
/// identifier and not a crate path (`kioskd_actors::...`).
fn kioskd_words(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("kioskd_") {
        let start = from + pos;
        let mut end = start + "kioskd_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        from = end;
        let glued =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let crate_path = text[end..].starts_with("::")
            || matches!(&text[start..end], "kioskd_actors" | "kioskd_protocol");
        if !glued && !crate_path {
            out.push(text[start..end].to_string());
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The source files that may record metrics, with their text; the catalog itself excluded.
fn sources() -> Vec<(PathBuf, String)> {
    let root = root();
    let catalog = root.join("actors/src/catalog.rs");
    let mut files = Vec::new();
    for dir in ["src", "actors/src", "protocol/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(
        files.len() > 10,
        "walked too few source files: {}",
        files.len()
    );
    files
        .into_iter()
        .filter(|p| *p != catalog)
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect()
}

/// `kioskd_*` words in source that are neither catalog names nor known non-metrics.
fn unknown_source_names(files: &[(PathBuf, String)], names: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        for w in kioskd_words(text) {
            if !names.contains(&w) && !NOT_METRICS.iter().any(|(n, _)| *n == w) {
                out.push(format!(
                    "{}: {w} is not in the metric catalog",
                    path.display()
                ));
            }
        }
    }
    out
}

/// Metrics macros whose first argument is not a catalog constant: a string literal or
/// a variable there would bypass the catalog even without a `kioskd_` prefix.
fn uncatalogued_macro_calls(files: &[(PathBuf, String)], consts: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        for mac in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(mac) {
                let arg: String = text[at + mac.len()..]
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let (prefix, konst) = arg.rsplit_once("::").unwrap_or(("", &arg));
                let via_catalog = matches!(
                    prefix,
                    "catalog" | "c" | "crate::catalog" | "kioskd_actors::catalog"
                );
                if !via_catalog || !consts.contains(konst) {
                    let line = text[..at].lines().count().max(1);
                    out.push(format!(
                        "{}:{line}: {mac}…) must name a catalog constant, got {arg:?}",
                        path.display()
                    ));
                }
            }
        }
    }
    out
}

/// Metric names a query text refers to, each checked against the catalog: `_bucket` only
/// on bucketed histograms, `_sum`/`_count` only on histograms.
fn unknown_query_names(
    origin: &str,
    query: &str,
    metrics: &[Metric],
    bucketed: &BTreeSet<String>,
) -> Vec<String> {
    let by_name: BTreeMap<&str, &Metric> = metrics.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut out = Vec::new();
    for w in kioskd_words(query) {
        if by_name.contains_key(w.as_str()) {
            continue;
        }
        let ok = if let Some(base) = w.strip_suffix("_bucket") {
            bucketed.contains(base)
        } else if let Some(base) = w.strip_suffix("_sum").or_else(|| w.strip_suffix("_count")) {
            by_name.get(base).is_some_and(|m| m.kind == Kind::Histogram)
        } else {
            false
        };
        if !ok {
            out.push(format!(
                "{origin}: {w} is not a catalog metric (query: {query})"
            ));
        }
    }
    out
}

/// Strings under `expr`, `query` and `definition` keys anywhere in a dashboard.
fn dashboard_queries(v: &serde_json::Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                dashboard_queries(v, Some(k), out);
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|i| dashboard_queries(i, key, out))
        }
        serde_json::Value::String(s) if matches!(key, Some("expr" | "query" | "definition")) => {
            out.push(s.clone())
        }
        _ => {}
    }
}

/// The values of `key:` entries in a YAML file, following `|`/`>` block scalars.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - line.trim_start().len();
        i += 1;
        let Some(value) = trimmed.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                block.push(lines[i].trim());
                i += 1;
            }
            out.push(block.join("\n"));
        } else {
            out.push(value.to_string());
        }
    }
    out
}

fn dashboards_dir() -> PathBuf {
    root().join("dashboards")
}

#[test]
fn catalog_names_are_unique_and_follow_the_naming_rules() {
    let metrics = catalog();
    let problems = naming_problems(&metrics);
    assert!(
        problems.is_empty(),
        "catalog naming problems:\n{}",
        problems.join("\n")
    );
    let names = catalog_names();
    for (n, why) in SHAPE_EXCEPTIONS {
        assert!(
            names.contains(*n),
            "stale shape exception {n} ({why}): drop it"
        );
    }
}

#[test]
fn every_histogram_with_buckets_is_a_catalog_histogram() {
    let metrics = catalog();
    let b = bucketed();
    assert!(
        !b.is_empty(),
        "found no set_buckets_for_metric in src/telemetry.rs"
    );
    for name in &b {
        assert!(
            metrics
                .iter()
                .any(|m| &m.name == name && m.kind == Kind::Histogram),
            "{name} has buckets but is not a catalog histogram"
        );
    }
}

#[test]
fn code_records_only_catalog_names() {
    let names = catalog_names();
    let files = sources();
    let problems = unknown_source_names(&files, &names);
    assert!(
        problems.is_empty(),
        "metric names outside the catalog:\n{}",
        problems.join("\n")
    );
    for (n, why) in NOT_METRICS {
        assert!(
            !names.contains(*n),
            "{n} is listed as not a metric ({why}) but is in the catalog"
        );
        assert!(
            files
                .iter()
                .any(|(_, t)| kioskd_words(t).iter().any(|w| w == n)),
            "stale NOT_METRICS entry {n} ({why}): it no longer appears in source"
        );
    }
}

#[test]
fn metrics_macros_take_catalog_constants() {
    let consts: BTreeSet<String> = catalog().into_iter().map(|m| m.konst).collect();
    let files = sources();
    let problems = uncatalogued_macro_calls(&files, &consts);
    assert!(
        problems.is_empty(),
        "metrics recorded outside the catalog:\n{}",
        problems.join("\n")
    );
    let calls: usize = files
        .iter()
        .map(|(_, t)| t.matches("counter!(").count() + t.matches("gauge!(").count())
        .sum();
    assert!(
        calls > 10,
        "found only {calls} metrics macro calls: is the scan broken?"
    );
}

#[test]
fn dashboards_query_only_catalog_names() {
    let metrics = catalog();
    let b = bucketed();
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(
        dashboards.len() >= 2,
        "expected the live and platform dashboards"
    );
    let mut problems = Vec::new();
    for path in &dashboards {
        let text = std::fs::read_to_string(path).expect("dashboard readable");
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut queries = Vec::new();
        dashboard_queries(&json, None, &mut queries);
        let metric_queries = queries.iter().filter(|q| q.contains("kioskd_")).count();
        assert!(
            metric_queries >= 5,
            "{}: only {metric_queries} metric queries",
            path.display()
        );
        for q in &queries {
            problems.extend(unknown_query_names(
                &path.display().to_string(),
                q,
                &metrics,
                &b,
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard queries outside the catalog:\n{}",
        problems.join("\n")
    );
}

#[test]
fn alert_rules_and_their_tests_use_only_catalog_names() {
    let metrics = catalog();
    let b = bucketed();
    let mut problems = Vec::new();
    let alerts = std::fs::read_to_string(dashboards_dir().join("alerts.yml")).expect("alerts.yml");
    let exprs = yaml_values(&alerts, "expr");
    assert!(
        exprs.len() >= 5,
        "alerts.yml: found only {} exprs",
        exprs.len()
    );
    for e in &exprs {
        assert!(
            e.contains("kioskd_"),
            "alerts.yml: expr without a kioskd metric: {e}"
        );
        problems.extend(unknown_query_names("alerts.yml", e, &metrics, &b));
    }
    let tests =
        std::fs::read_to_string(dashboards_dir().join("alerts_test.yml")).expect("alerts_test.yml");
    let series = yaml_values(&tests, "series");
    assert!(!series.is_empty(), "alerts_test.yml: no input series");
    for s in series.iter().chain(yaml_values(&tests, "expr").iter()) {
        problems.extend(unknown_query_names("alerts_test.yml", s, &metrics, &b));
    }
    assert!(
        problems.is_empty(),
        "alert names outside the catalog:\n{}",
        problems.join("\n")
    );
}

// The checks above must be able to fail: feed them a wrong name of each kind.

#[test]
fn a_misspelt_or_uncatalogued_name_is_reported() {
    let metrics = catalog();
    let names = catalog_names();
    let consts: BTreeSet<String> = metrics.iter().map(|m| m.konst.clone()).collect();
    let b = bucketed();

    let code = vec![(
        PathBuf::from("src/fake.rs"),
        "metrics::counter!(\"kioskd_sessions_startd_total\").increment(1);\n\
         metrics::gauge!(catalog::SESSIONS_ACTIVE).set(1.0);\n\
         use kioskd_actors::catalog;\n"
            .to_string(),
    )];
    let unknown = unknown_source_names(&code, &names);
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].contains("kioskd_sessions_startd_total"));
    let macros = uncatalogued_macro_calls(&code, &consts);
    assert_eq!(macros.len(), 1, "{macros:?}");
    assert!(macros[0].contains("src/fake.rs:1"), "{macros:?}");

    let bad = "sum(rate(kioskd_sessions_startd_total[5m]))";
    assert_eq!(unknown_query_names("q", bad, &metrics, &b).len(), 1);
    let summary_bucket = "kioskd_attendance_command_latency_seconds_bucket";
    assert_eq!(
        unknown_query_names("q", summary_bucket, &metrics, &b).len(),
        1
    );
    let counter_sum = "kioskd_http_requests_total_sum";
    assert_eq!(unknown_query_names("q", counter_sum, &metrics, &b).len(), 1);
    let good = "histogram_quantile(0.99, sum by (le) (rate(kioskd_http_request_duration_seconds_bucket[5m])))";
    assert!(unknown_query_names("q", good, &metrics, &b).is_empty());

    let yaml = "rules:\n  - alert: X\n    expr: |\n      rate(kioskd_nope_total[5m]) > 0\n      and kioskd_sessions_active > 1\n    for: 1m\n";
    let exprs = yaml_values(yaml, "expr");
    assert_eq!(exprs.len(), 1, "{exprs:?}");
    assert_eq!(unknown_query_names("y", &exprs[0], &metrics, &b).len(), 1);
}

#[test]
fn a_badly_named_catalog_entry_is_reported() {
    let bad = "/// Gauge: things.\npub const A: &str = \"kioskd_ws_things_total\";\n\
               /// Counter: stuff.\npub const B: &str = \"kioskd_ws_stuff\";\n\
               /// Histogram: seconds waited, by `user_id`.\npub const C: &str = \"kioskd_ws_wait\";\n\
               /// Counter: stuff.\npub const D: &str = \"kioskd_ws_stuff\";\n\
               /// Gauge: one word.\npub const E: &str = \"kioskd_things\";\n";
    let metrics = parse_catalog(bad).expect("parses");
    let problems = naming_problems(&metrics).join("\n");
    for expected in [
        "kioskd_ws_things_total: only counters end in _total",
        "kioskd_ws_stuff: a counter must end in _total",
        "kioskd_ws_wait: a histogram of seconds must end in _seconds",
        "label `user_id` is not in the bounded label list",
        "kioskd_ws_stuff: declared twice",
        "kioskd_things: not kioskd_<subsystem>_<name>",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    assert!(parse_catalog("pub const X: &str = \"kioskd_x_y\";").is_err());
}
