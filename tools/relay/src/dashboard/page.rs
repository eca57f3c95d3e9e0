//! What every page shares: who is looking (`Access`), what a page shows (`Page`), the page around
//! a body (`shell`: head, header with the sign-in form or the operator's name, the last action's
//! message), the device filter, the style, the live-update script, and HTML escaping.

use cairn_verifier::campaign::DeviceState;
use serde::Deserialize;

use crate::engine::{DeviceQuery, View};

/// Most rows a device table shows (the filters narrow it).
const MAX_ROWS: usize = 200;

/// Which devices the device tables list (`?state=failed&stage=1`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Only devices in this state (its name, e.g. `failed`).
    #[serde(default)]
    pub state: Option<String>,
    /// Only devices of this stage (counted from 0).
    #[serde(default)]
    pub stage: Option<String>,
}

impl Filter {
    /// What the engine's view lists for this filter: the matching devices, at most a table's
    /// worth.
    pub fn query(&self) -> DeviceQuery {
        DeviceQuery {
            state: self.state(),
            stage: self.stage(),
            limit: MAX_ROWS,
        }
    }

    pub(super) fn state(&self) -> Option<DeviceState> {
        self.state.as_deref().and_then(DeviceState::from_name)
    }

    pub(super) fn stage(&self) -> Option<usize> {
        self.stage.as_deref().and_then(|s| s.parse().ok())
    }
}

/// The sign-in form: the operator's bearer token, never stored by the page.
fn sign_in_form(csrf: &str) -> String {
    format!(
        "<form class=\"sign-in\" method=\"post\" action=\"/dashboard/sign-in\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Operator token <input type=\"password\" name=\"token\" autocomplete=\"off\" required></label> \
         <button type=\"submit\">Sign in</button></form>",
        esc(csrf)
    )
}

/// Who is signed in, and the sign-out form.
fn signed_in(name: &str, csrf: &str) -> String {
    format!(
        "<form class=\"sign-out\" method=\"post\" action=\"/dashboard/sign-out\">\
         signed in as <b id=\"operator\">{}</b> <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">Sign out</button></form>",
        esc(name),
        esc(csrf)
    )
}

/// Who is looking, and what they may do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// A page written to a file (the demo): no form.
    ReadOnly,
    /// Not signed in: the sign-in form, with its CSRF value (also in a cookie).
    SignIn {
        /// The sign-in form's CSRF value.
        csrf: &'a str,
    },
    /// A signed-in operator: the action forms.
    Operator {
        /// The operator's name.
        name: &'a str,
        /// The session's CSRF value, carried by every form.
        csrf: &'a str,
        /// What the last action did.
        flash: Option<&'a str>,
    },
}

/// What the page shows: the engine's view, and the mirror it runs against.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The signer log's origin.
    pub origin: &'a str,
    /// Entries in the mirror.
    pub mirror_size: u64,
    /// The engine at this moment.
    pub view: &'a View,
    /// Who is looking.
    pub access: Access<'a>,
    /// Which devices the device tables list.
    pub filter: &'a Filter,
    /// The witnesses (with `[witnesses]`): of the signer's log, then of the relay's
    /// (`relay_log`).
    pub witnesses: &'a [crate::witness::WitnessView],
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The page around `body`: the head, the header with the sign-in form or the operator's name,
/// the last action's message.
pub(super) fn shell(page: &Page<'_>, title: &str, summary: &str, body: &str) -> String {
    let (who, flash, reload) = match page.access {
        Access::ReadOnly => (String::new(), String::new(), ""),
        Access::SignIn { csrf } => (
            sign_in_form(csrf),
            String::new(),
            // Without the script, a reader's page reloads itself; an operator's does not (it
            // would lose what they type).
            "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>",
        ),
        Access::Operator { name, csrf, flash } => (
            signed_in(name, csrf),
            flash.map_or_else(String::new, |f| {
                format!("<p class=\"flash\" role=\"status\">{}</p>", esc(f))
            }),
            "",
        ),
    };
    let script = if matches!(page.access, Access::ReadOnly) {
        ""
    } else {
        "<script src=\"/dashboard/live.js\" defer></script>"
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{reload}\
         <title>{title}</title><style>{STYLE}</style>{script}</head>\
         <body><header><h1><a href=\"/dashboard\">cairn relay</a></h1>{who}\
         <p class=\"live\" id=\"live-summary\">{summary} · <a href=\"\">refresh</a></p></header>{flash}{body}</body></html>",
        title = esc(title),
    )
}

/// The page a reader gets when the dashboard is not public (`[http] public`): the sign-in form
/// and nothing of the relay's state.
pub fn sign_in_page(csrf: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>cairn relay: sign in</title><style>{STYLE}</style></head>\
         <body><header><h1><a href=\"/dashboard\">cairn relay</a></h1>{}</header>\
         <p class=\"empty\">The dashboard shows every device's state: sign in with your operator \
         token.</p></body></html>",
        sign_in_form(csrf)
    )
}

/// Refreshes every element of class `live` with an id in place, every 5 seconds, from the same
/// URL: no full reload, forms and what is typed in them untouched.
pub const LIVE_JS: &str = r#"(function () {
  "use strict";
  async function refresh() {
    try {
      const r = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), "text/html");
      for (const fresh of doc.querySelectorAll(".live[id]")) {
        const old = document.getElementById(fresh.id);
        if (old && old.outerHTML !== fresh.outerHTML) old.replaceWith(document.importNode(fresh, true));
      }
      document.documentElement.dataset.refreshed = String(Date.now());
    } catch (e) { /* the next round tries again */ }
  }
  setInterval(refresh, 5000);
})();
"#;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}\
h1{margin:0}header p{color:#555}section.campaign{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}\
.status{font-size:.6em;padding:.2em .6em;border-radius:1em;color:#fff;vertical-align:middle}\
.running{background:#1565c0}.waiting{background:#f9a825}.paused{background:#c62828}.completed{background:#2e7d32}\
ol.gates{display:grid;grid-template-columns:repeat(3,1fr);gap:.6em;padding:0;list-style:none}\
li.gate{border:1px solid #ddd;border-left:6px solid #f9a825;padding:.5em;border-radius:4px}\
li.gate.ok{border-left-color:#2e7d32}.mark{float:right}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}\
.legend span{margin-right:1em;font-size:.85em}.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}\
ul.events{font-size:.9em}.problem{color:#c62828}\
h1 a{color:inherit;text-decoration:none}header form{display:inline}.flash{background:#e8f5e9;border:1px solid #2e7d32;padding:.5em}\
.actions{display:grid;grid-template-columns:repeat(2,1fr);gap:.6em}.actions form{border:1px solid #ddd;padding:.5em;border-radius:4px}\
.actions label,.filter label{display:block;margin:.2em 0}.actions input[type=text],.actions textarea{width:95%}\
table.devices td,table.events td,table.events th{text-align:left}.note{color:#555;font-size:.85em}";
