//! The scale benchmark's results: kept as JSON between runs (each run replaces the sizes it
//! measured), printed as Markdown tables and drawn as a log-log SVG (time and peak memory
//! against fleet size), written without a plotting library.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// The steps of the offline path, in order: (key, label).
pub(crate) const STEPS: [(&str, &str); 8] = [
    ("import", "registry import"),
    ("plan", "plan (eligibility, manifests, HSM, log append)"),
    ("deliveries", "deliveries (proofs, envelopes)"),
    ("bundle", "bundle export"),
    ("relay-import", "relay import (relay's process)"),
    ("relay-stage", "relay first stage (relay's process)"),
    ("pack-export", "evidence pack export"),
    ("pack-verify", "evidence pack verification"),
];

/// One step's measurement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Step {
    pub(crate) secs: f64,
    pub(crate) peak_bytes: u64,
    pub(crate) written: u64,
    pub(crate) extra: serde_json::Value,
}

/// One fleet size's run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Run {
    /// `openssl speed ecdsap256` verify/s on one core, measured at the start of the run.
    pub(crate) openssl_verify: f64,
    /// `openssl speed -multi <cores> ecdsap256` verify/s (every core at once), just before and
    /// just after the registry import.
    #[serde(default)]
    pub(crate) openssl_verify_all: Vec<f64>,
    pub(crate) cores: usize,
    pub(crate) steps: BTreeMap<String, Step>,
    /// Steps that failed, with why (the relay's side only: a signer step failing ends the run).
    #[serde(default)]
    pub(crate) failed: BTreeMap<String, String>,
}

/// Every size measured so far, by device count.
pub(crate) type Results = BTreeMap<u64, Run>;

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1u32 << 20)
}

fn size(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{} M", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{} k", n / 1_000),
        n => n.to_string(),
    }
}

/// The Markdown tables: every step at every size, the registry import against OpenSSL, and the
/// per-device cost from 100 k to the largest size.
pub(crate) fn table(results: &Results) -> String {
    let mut t = String::new();
    t.push_str(
        "| step | devices | wall time, s | µs per device | peak RSS, MiB | written, MiB |\n",
    );
    t.push_str("|---|---:|---:|---:|---:|---:|\n");
    for (key, label) in STEPS {
        for (&n, run) in results {
            if let Some(why) = run.failed.get(key) {
                let _ = writeln!(t, "| {label} | {} | failed: {why} | | | |", size(n));
            }
            if let Some(s) = run.steps.get(key) {
                let _ = writeln!(
                    t,
                    "| {label} | {} | {:.2} | {:.2} | {:.0} | {:.0} |",
                    size(n),
                    s.secs,
                    s.secs * 1e6 / n as f64,
                    mib(s.peak_bytes),
                    mib(s.written)
                );
            }
        }
    }
    t.push_str(
        "\n| registry import | devices | devices/s | openssl verify/s, every core at once, around the step | ratio (goal >= 0.8) | openssl verify/s x cores, at the start | ratio |\n",
    );
    t.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (&n, run) in results {
        if let Some(s) = run.steps.get("import") {
            let rate = n as f64 / s.secs;
            let start = run.openssl_verify * run.cores as f64;
            let around = &run.openssl_verify_all;
            let (all, ratio) = if around.is_empty() {
                ("not measured".to_owned(), String::new())
            } else {
                let mean = around.iter().sum::<f64>() / around.len() as f64;
                let each: Vec<String> = around.iter().map(|r| format!("{r:.0}")).collect();
                (
                    format!("{mean:.0} ({})", each.join(", ")),
                    format!("{:.3}", rate / mean),
                )
            };
            let _ = writeln!(
                t,
                "| read + parse + verify + write | {} | {rate:.0} | {all} | {ratio} | {start:.0} | {:.3} |",
                size(n),
                rate / start
            );
        }
    }
    let base = results.get(&100_000);
    let Some((&top, last)) = results.iter().next_back() else {
        return t;
    };
    if let Some(base) = base.filter(|_| top > 100_000) {
        let _ = write!(
            t,
            "\n| step | µs/device at 100 k | µs/device at {} | ratio (goal <= 1.2) | peak RSS at {}, MiB |\n|---|---:|---:|---:|---:|\n",
            size(top),
            size(top)
        );
        for (key, label) in STEPS {
            if let (Some(a), Some(b)) = (base.steps.get(key), last.steps.get(key)) {
                let (pa, pb) = (a.secs / 1e5 * 1e6, b.secs / top as f64 * 1e6);
                let _ = writeln!(
                    t,
                    "| {label} | {pa:.2} | {pb:.2} | {:.2} | {:.0} |",
                    pb / pa,
                    mib(b.peak_bytes)
                );
            }
        }
    }
    t
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A log-log panel of `value(step)` against fleet size, at `x0` in the picture.
fn panel(svg: &mut String, results: &Results, x0: f64, title: &str, value: &dyn Fn(&Step) -> f64) {
    let (w, h, left, top, bottom) = (460.0, 340.0, 60.0, 30.0, 40.0);
    let points: Vec<(usize, f64, f64)> = STEPS
        .iter()
        .enumerate()
        .flat_map(|(i, (key, _))| {
            results
                .iter()
                .filter_map(move |(&n, run)| Some((i, n as f64, value(run.steps.get(*key)?))))
        })
        .filter(|&(_, _, v)| v > 0.0)
        .collect();
    if points.is_empty() {
        return;
    }
    let decade = |v: f64, up: bool| {
        if up {
            v.log10().ceil()
        } else {
            v.log10().floor()
        }
    };
    let (xl, xh) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (yl, yh) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.2), b.max(p.2)));
    let (xl, xh, yl, yh) = (
        decade(xl, false),
        decade(xh, true),
        decade(yl, false),
        decade(yh, true).max(decade(yl, false) + 1.0),
    );
    let px = |x: f64| x0 + left + (x.log10() - xl) / (xh - xl) * (w - left - 10.0);
    let py = |y: f64| top + (yh - y.log10()) / (yh - yl) * (h - top - bottom);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" font-size="14" font-weight="bold">{title}</text>"#,
        x0 + left
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{}" y="{top}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        x0 + left,
        w - left - 10.0,
        h - top - bottom
    );
    for d in (xl as i32)..=(xh as i32) {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">1e{d}</text>"##,
            h - bottom,
            h - bottom + 14.0
        );
    }
    for d in (yl as i32)..=(yh as i32) {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">1e{d}</text>"##,
            x0 + left,
            x0 + w - 10.0,
            x0 + left - 4.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">devices (log)</text>"#,
        x0 + w / 2.0,
        h - 8.0
    );
    // The slope of linear growth, through the first step's smallest point, for reference.
    if let Some(&(_, x, y)) = points.first() {
        let x2 = 10f64.powf(xh);
        let y2 = y * x2 / x;
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 4"/>"##,
            px(x),
            py(y),
            px(x2),
            py(y2.min(10f64.powf(yh))).max(top)
        );
    }
    for (i, (_, _)) in STEPS.iter().enumerate() {
        let line: Vec<String> = points
            .iter()
            .filter(|p| p.0 == i)
            .map(|p| format!("{:.1},{:.1}", px(p.1), py(p.2)))
            .collect();
        if line.is_empty() {
            continue;
        }
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            line.join(" "),
            COLORS[i]
        );
        for p in &line {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                COLORS[i]
            );
        }
    }
}

/// The log-log plot: wall time and peak RSS of every step against fleet size.
pub(crate) fn svg(results: &Results) -> String {
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="940" height="470" font-family="sans-serif">
<rect width="940" height="470" fill="white"/>
"#,
    );
    panel(&mut svg, results, 0.0, "wall time, s", &|s| s.secs);
    panel(&mut svg, results, 470.0, "peak RSS, MiB", &|s| {
        mib(s.peak_bytes)
    });
    for (i, (_, label)) in STEPS.iter().enumerate() {
        let (x, y) = (20.0 + 470.0 * (i / 4) as f64, 365.0 + 22.0 * (i % 4) as f64);
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{}" font-size="12">{label}</text>"#,
            y - 4.0,
            COLORS[i],
            x + 20.0,
            y + 1.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="20" y1="457" x2="34" y2="457" stroke="#999" stroke-dasharray="4 4"/><text x="40" y="461" font-size="12">linear growth (slope 1), for reference</text>"##
    );
    svg.push_str("</svg>\n");
    svg
}
