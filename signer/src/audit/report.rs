//! The audit summary as one self-contained HTML file: no script, no external resource, the plots
//! are inline SVG, so it opens the same offline years from now.

#![expect(
    clippy::cast_precision_loss,
    reason = "plot coordinates: counts and seconds far below 2^52"
)]

use std::fmt::Write as _;

use super::summary::{STATE_ORDER, Summary, date, date_time};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(state: &str) -> &'static str {
    match state {
        "pending" => "#9e9e9e",
        "delivered" => "#1e88e5",
        "installed" => "#2e7d32",
        "failed" => "#e53935",
        "paused" => "#fb8c00",
        "rolled-back" => "#8e24aa",
        "quarantined" => "#6d4c41",
        "rejected" => "#455a64",
        _ => "#cfd8dc",
    }
}

/// Device states over time: one line per state.
fn states_plot(s: &Summary) -> String {
    let (w, h, left, bottom) = (760.0, 280.0, 60.0, 30.0);
    let Some(last) = s.timeline.last() else {
        return "<p>No device events.</p>".into();
    };
    let t_top = last.t.max(1);
    let y_top = s
        .timeline
        .iter()
        .flat_map(|x| x.counts.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let (t_max, y_max) = (t_top as f64, y_top as f64);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" role="img" aria-label="device states over time">"#,
        h + bottom + 10.0
    );
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{h}" x2="{w}" y2="{h}" stroke="#333"/><line x1="{left}" y1="0" x2="{left}" y2="{h}" stroke="#333"/><text x="{}" y="{}" font-size="11">0</text><text x="0" y="12" font-size="11">{}</text><text x="{}" y="{}" font-size="11" text-anchor="end">{} s</text>"##,
        left - 12.0,
        h,
        y_top,
        w,
        h + 16.0,
        t_top
    );
    for (n, state) in STATE_ORDER.iter().enumerate() {
        if !s
            .timeline
            .iter()
            .any(|x| x.counts.get(state).copied().unwrap_or(0) > 0)
        {
            continue;
        }
        let points: Vec<String> = s
            .timeline
            .iter()
            .map(|x| {
                let c = x.counts.get(state).copied().unwrap_or(0) as f64;
                format!(
                    "{:.1},{:.1}",
                    left + (w - left) * x.t as f64 / t_max,
                    h - h * c / y_max
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/><text x="{}" y="{}" font-size="11" fill="{}">{}</text>"#,
            color(state),
            points.join(" "),
            left + 10.0 + 90.0 * (n % 8) as f64,
            h + bottom + 6.0,
            color(state),
            state
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Failures per stage: one bar per stage.
fn failures_plot(s: &Summary) -> String {
    let (w, h) = (420.0, 200.0);
    let max = s
        .stages
        .iter()
        .map(|x| x.failures)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bar = (w - 40.0) / s.stages.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" role="img" aria-label="failures per stage">"#,
        h + 40.0
    );
    for (i, st) in s.stages.iter().enumerate() {
        let bh = (h - 20.0) * st.failures as f64 / max;
        let x = 20.0 + bar * i as f64;
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#e53935"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text><text x="{:.1}" y="{}" font-size="12" text-anchor="middle">{}</text>"##,
            x + bar * 0.15,
            h - bh,
            bar * 0.7,
            x + bar / 2.0,
            h - bh - 4.0,
            st.failures,
            x + bar / 2.0,
            h + 18.0,
            esc(&st.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

impl Summary {
    /// The self-contained HTML report.
    pub fn html(&self) -> String {
        html(self)
    }
}

/// The report.
#[expect(
    clippy::too_many_lines,
    reason = "one page, section after section, in the summary's order"
)]
fn html(s: &Summary) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cairn audit summary: {c}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}}
th{{background:#f3f3f3}}.ok{{background:#2e7d32;color:#fff;padding:4px 10px;border-radius:4px}}.bad{{background:#c62828;color:#fff;padding:4px 10px;border-radius:4px}}
code{{font-size:12px;word-break:break-all}}
</style></head><body>
<h1>Audit summary: campaign <code>{c}</code></h1>
<p><span class="{cls}">{verdict}</span> Verified offline from the evidence pack with the root certificate as the only trust anchor: <code>{fp}</code></p>"#,
        c = esc(&s.campaign),
        cls = if s.verified { "ok" } else { "bad" },
        verdict = if s.verified {
            "evidence verified".to_owned()
        } else {
            format!("verification FAILED: {} findings", s.findings.len())
        },
        fp = esc(&s.root_fingerprint),
    );
    if !s.findings.is_empty() {
        o.push_str("<h2>Findings</h2><table><tr><th>item</th><th>problem</th></tr>");
        for f in &s.findings {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&f.item),
                esc(&f.problem)
            );
        }
        o.push_str("</table>");
    }
    let _ = write!(
        o,
        "<p>Signer log <code>{}</code>: checkpoint size {}, {} entries in the pack. Relay log <code>{}</code>: checkpoint size {}, {} entries.</p>",
        esc(&s.logs[0].0),
        s.logs[0].1,
        s.logs[0].2,
        esc(&s.logs[1].0),
        s.logs[1].1,
        s.logs[1].2
    );
    for (which, w) in s.witness_facts() {
        let _ = write!(
            o,
            "<p>Witnesses of the {which} checkpoint: <span class=\"{}\">{}</span> {}</p>",
            if w.quorum { "ok" } else { "bad" },
            if w.quorum { "quorum" } else { "NO QUORUM" },
            esc(&w.summary)
        );
    }
    o.push_str("<h2>CRA concern, control and evidence</h2><table><tr><th>CRA concern</th><th>control in cairn</th><th>evidence retained (log: entries)</th></tr>");
    for row in &s.cra {
        let ev: Vec<String> = row
            .evidence
            .iter()
            .map(|e| {
                let entries = if e.entries.len() > 8 {
                    format!(
                        "{} … {} ({} runs)",
                        e.entries[..4].join(", "),
                        e.entries[e.entries.len() - 2..].join(", "),
                        e.entries.len()
                    )
                } else if e.entries.is_empty() {
                    "none".into()
                } else {
                    e.entries.join(", ")
                };
                format!("<b>{}</b> {}: {}", e.log, esc(&entries), esc(&e.what))
            })
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.concern,
            row.control,
            ev.join("<br>")
        );
    }
    o.push_str("</table>");
    let _ = write!(
        o,
        "<h2>Signing record</h2><p>Key ceremony: {} of {} custodians ({}).</p><table><tr><th>release</th><th>version</th><th>entry</th><th>signed</th><th>custodians</th><th>key</th><th>image SHA-256</th><th>advisories</th><th>support until</th><th>retained until</th></tr>",
        s.custodians.1,
        s.custodians.0.len(),
        esc(&s.custodians.0.join(", "))
    );
    for r in &s.releases {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.release),
            esc(&r.version),
            r.index,
            date_time(r.issued_at),
            esc(&r.custodians.join(", ")),
            esc(&r.key),
            r.image_digest,
            esc(&r.advisories.join(", ")),
            date(r.support_until),
            r.retain_until.map_or_else(|| "?".into(), date)
        );
    }
    o.push_str("</table>");
    if let Some(p) = &s.plan {
        let _ = write!(
            o,
            "<h2>Eligibility</h2><p>{} devices approved, {} rejected; decisions at signer log entries {}..{}, bound by the plan (entry {}, signed {} by {}).</p><table><tr><th>rejection reason</th><th>devices</th></tr>",
            p.eligible,
            p.rejected,
            p.decisions[0],
            p.decisions[1],
            p.index,
            date_time(p.created_at),
            esc(&p.custodians.join(", "))
        );
        for (r, n) in &s.rejected_by_reason {
            let _ = write!(o, "<tr><td>{}</td><td>{n}</td></tr>", esc(r));
        }
        let _ = write!(
            o,
            "</table><h2>Rollout</h2><p>Policy: up to {} attempts per device, backoff {} s doubling; quarantine after {} failures{}; rollback target <code>{}</code>. {} retries.</p>",
            p.max_attempts,
            p.backoff_secs,
            p.quarantine_after_failures,
            if p.quarantine_on_verification_failure {
                " or at once on a verification failure"
            } else {
                ""
            },
            esc(&p.rollback),
            s.retries
        );
        if let Some(j) = &p.jobs_controls {
            let _ = write!(
                o,
                "<p>AWS IoT Jobs controls, signed with the plan (rate, timeout, abort and retry criteria; the relay enforces them and records each firing): {}</p>",
                esc(j)
            );
        }
    }
    o.push_str("<table><tr><th>stage</th><th>devices</th><th>installed</th><th>failures</th><th>installed on a retry</th><th>quarantined</th><th>rolled back</th><th>gate to the next</th></tr>");
    for st in &s.stages {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&st.name),
            st.devices,
            st.installed,
            st.failures,
            st.retried,
            st.quarantined,
            st.rolled_back,
            st.gate
        );
    }
    let _ = write!(
        o,
        "</table><h3>Device states over time</h3>{}<h3>Failures per stage</h3>{}",
        states_plot(s),
        failures_plot(s)
    );
    o.push_str("<h3>History: gates, pauses, retries, rollbacks, quarantines</h3><table><tr><th>when (UTC)</th><th>log</th><th>entry</th><th>what</th><th>by</th></tr>");
    for h in &s.history {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            date_time(h.at),
            h.log,
            h.index,
            esc(&h.what),
            esc(&h.actor)
        );
    }
    o.push_str(
        "</table><h2>Final device states</h2><table><tr><th>state</th><th>devices</th></tr>",
    );
    for (state, n) in &s.final_states {
        let _ = write!(
            o,
            r#"<tr><td><span style="color:{}">&#9632;</span> {state}</td><td>{n}</td></tr>"#,
            color(state)
        );
    }
    o.push_str("</table>");
    if let (Some(a), Some(b)) = (s.support_until, s.retain_until) {
        let _ = write!(
            o,
            "<h2>Support period and retention</h2><p>Support period ends {}. The vault refuses to delete any evidence of this release before {} (CRA Art. 13(8): the support period, at least 5 years; Art. 13(13): 10 years of documentation).</p>",
            date(a),
            date(b)
        );
    }
    o.push_str("</body></html>\n");
    o
}
