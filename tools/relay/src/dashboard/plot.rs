//! The devices per state over time, as an SVG plot with the stage openings marked.

use std::fmt::Write as _;

use cairn_verifier::campaign::DeviceState;

use super::page::{esc, n};
use crate::engine::CampaignView;

/// The states the plot draws, with their colours.
const PLOTTED: [(DeviceState, &str); 7] = [
    (DeviceState::Installed, "#2e7d32"),
    (DeviceState::Delivered, "#1565c0"),
    (DeviceState::Pending, "#90a4ae"),
    (DeviceState::Failed, "#c62828"),
    (DeviceState::Quarantined, "#6a1b9a"),
    (DeviceState::RolledBack, "#ef6c00"),
    (DeviceState::Paused, "#795548"),
];

#[expect(
    clippy::cast_precision_loss,
    clippy::many_single_char_names,
    reason = "pixel coordinates of counts and seconds far below 2^52"
)]
pub(super) fn plot(c: &CampaignView) -> String {
    let (w, h, left, bottom) = (720.0_f64, 240.0_f64, 56.0_f64, 28.0_f64);
    let mut svg = format!(
        "<svg class=\"plot\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"devices per state over time\">"
    );
    let points = &c.history;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        svg.push_str("<text x=\"60\" y=\"120\">no events yet</text></svg>");
        return svg;
    };
    let t0 = first.0;
    let span = (last.0.saturating_sub(t0)).max(1) as f64;
    let top = points
        .iter()
        .flat_map(|(_, c)| PLOTTED.iter().map(move |(s, _)| c[*s]))
        .max()
        .unwrap_or(1)
        .max(1);
    let max = top as f64;
    let x = |t: u64| left + (t.saturating_sub(t0) as f64) / span * (w - left - 10.0);
    let y = |v: u64| (h - bottom) - (v as f64) / max * (h - bottom - 10.0);
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>\
         <line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{}\" stroke=\"#444\"/>\
         <text x=\"4\" y=\"16\" font-size=\"11\">{}</text><text x=\"4\" y=\"{}\" font-size=\"11\">0</text>\
         <text x=\"{left}\" y=\"{}\" font-size=\"11\">0 s</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{} s</text>",
        h - bottom,
        w - 10.0,
        h - bottom,
        h - bottom,
        n(top),
        h - bottom,
        h - 8.0,
        w - 10.0,
        h - 8.0,
        last.0.saturating_sub(t0)
    );
    for (stage, t) in c.stages.iter().filter_map(|s| Some((s, s.opened_at?))) {
        let name = stage.plan.name.as_str();
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"10\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#bbb\" stroke-dasharray=\"3,3\"/>\
             <text x=\"{2:.1}\" y=\"22\" font-size=\"10\" fill=\"#555\">{3}</text>",
            x(t),
            h - bottom,
            x(t) + 3.0,
            esc(name)
        );
    }
    for (state, colour) in PLOTTED {
        let path: Vec<String> = points
            .iter()
            .map(|(t, counts)| format!("{:.1},{:.1}", x(*t), y(counts[state])))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            path.join(" "),
            state.name()
        );
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (state, colour) in PLOTTED {
        let _ = write!(
            svg,
            "<span><i style=\"background:{colour}\"></i>{}</span> ",
            state.name()
        );
    }
    svg.push_str("</p>");
    svg
}
