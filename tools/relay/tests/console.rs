//! The operator console drives a real campaign in headless Chromium (WebDriver through
//! `chromedriver`): an operator signs in with their token, pauses the running campaign,
//! quarantines two devices with a reason, finds them by filter and sees them, with the reason and
//! the relay-log indices, on their device pages; the page updates in place, without a reload,
//! when the campaign changes. A form posted without a session, or without the session's CSRF
//! value, changes nothing. Screenshots are kept in the target directory (`target/tmp/console-*.png`)
//! and, when `CAIRN_SCREENSHOTS` names a directory, there too (docs/img/ holds them).

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "test code: a panic is the failure report, and the test is one scenario"
)]

mod browser;
mod common;

use std::path::Path;

use browser::{Browser, RelayProcess, serve_running_campaign};
use common::{CAMPAIGN, TOKEN};

fn shot(browser: &Browser, name: &str) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-{name}.png"));
    browser.screenshot(&path);
    if let Ok(dir) = std::env::var("CAIRN_SCREENSHOTS") {
        std::fs::copy(&path, Path::new(&dir).join(format!("console-{name}.png"))).unwrap();
    }
}

/// The relay log's size, from `/metrics`.
fn log_size(relay: &RelayProcess) -> u64 {
    let bearer = format!("Bearer {TOKEN}");
    let text = relay.send("GET", "/metrics", &[("Authorization", &bearer)], "");
    text.lines()
        .find_map(|l| l.strip_prefix("cairn_relay_state_log_size "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The campaign's status, through the API.
fn status(relay: &RelayProcess) -> String {
    let bearer = format!("Bearer {TOKEN}");
    let reply = relay.send(
        "GET",
        &format!("/api/v1/campaigns/{CAMPAIGN}"),
        &[("Authorization", &bearer)],
        "",
    );
    let body: serde_json::Value =
        serde_json::from_str(reply.split_once("\r\n\r\n").unwrap().1).unwrap();
    body["status"].as_str().unwrap().to_owned()
}

/// The value of the hidden CSRF field of the form `form` in `dom`.
fn csrf_of(dom: &str, form: &str) -> String {
    let at = dom.find(&format!("id=\"{form}\"")).unwrap();
    let field = &dom[at..];
    let start = field.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    field[start..start + 64].to_owned()
}

#[test]
fn an_operator_pauses_and_quarantines_from_the_console_and_forgeries_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = serve_running_campaign(dir.path(), "");
    let url = format!("http://127.0.0.1:{}", relay.port);
    let browser = Browser::start(&dir.path().join("profile"));

    // A reader sees the sign-in form, no action form, and nothing of the relay's state (the
    // dashboard is not public unless `[http] public` says so).
    browser.open(&format!("{url}/dashboard"));
    let dom = browser.source();
    assert!(!dom.contains("data-status"), "{dom}");
    assert!(dom.contains("action=\"/dashboard/sign-in\""));
    assert!(!dom.contains("id=\"pause-"));
    shot(&browser, "sign-in");

    // A wrong token: refused, no session.
    browser.type_into("form.sign-in input[name=token]", "a guess");
    browser.click("form.sign-in button");
    browser.wait_for("the refusal", 10, |d| d.contains("not an operator token"));
    assert!(
        browser
            .call("GET", "/cookie", None)
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "cairn_session")
    );

    // The operator signs in: a session cookie the page's scripts cannot read, sent to this site
    // only, over a secure context only.
    browser.open(&format!("{url}/dashboard"));
    browser.type_into("form.sign-in input[name=token]", TOKEN);
    browser.click("form.sign-in button");
    let dom = browser.wait_for("the console", 10, |d| d.contains("id=\"operator\""));
    assert!(
        dom.contains("signed in as <b id=\"operator\">alice</b>"),
        "{dom}"
    );
    let cookie = browser.cookie("cairn_session");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    let session = cookie["value"].as_str().unwrap().to_owned();
    assert_eq!(
        browser.run("return document.cookie.includes('cairn_session')"),
        false
    );

    // Pause the running campaign, with a reason.
    let pause = format!("form[id=\"pause-{CAMPAIGN}\"]");
    browser.type_into(
        &format!("{pause} input[name=cause]"),
        "change freeze for the 2.4.1 audit",
    );
    browser.click(&format!("{pause} button"));
    let dom = browser.wait_for("the pause", 10, |d| {
        d.contains("data-status=\"paused-by-operator\"")
    });
    assert!(dom.contains("class=\"flash\""), "{dom}");
    assert!(dom.contains("Recorded as operator:alice"), "{dom}");
    assert!(dom.contains("by operator:alice: change freeze for the 2.4.1 audit"));
    assert_eq!(status(&relay), "paused-by-operator");
    shot(&browser, "paused");

    // Quarantine two devices by id, with a reason.
    let (first, second) = (common::device(3), common::device(7));
    let quarantine = format!("form[id=\"quarantine-{CAMPAIGN}\"]");
    browser.type_into(
        &format!("{quarantine} textarea[name=devices]"),
        &format!("{first}, {second}"),
    );
    let reason = "returned by the customer with the seal broken";
    browser.type_into(&format!("{quarantine} input[name=cause]"), reason);
    browser.click(&format!("{quarantine} button"));
    let dom = browser.wait_for("the quarantine", 10, |d| {
        d.contains("<td data-state=\"quarantined\">2</td>")
    });
    assert!(dom.contains("quarantine of campaign"), "{dom}");

    // The filter finds exactly them (a plain GET form).
    browser.choose("form.filter select[name=state]", "quarantined");
    browser.click("form.filter button");
    let dom = browser.wait_for("the filter", 10, |d| d.contains("2 devices match"));
    for d in [&first, &second] {
        assert!(dom.contains(&format!("data-device=\"{d}\" data-state=\"quarantined\"")));
    }
    assert_eq!(
        dom.matches("data-state=\"quarantined\"><td>").count(),
        2,
        "{dom}"
    );
    browser.run("document.querySelector('form.filter').scrollIntoView()");
    shot(&browser, "quarantined");

    // Each device's page shows the quarantine with the operator, the reason and its relay-log
    // index.
    for d in [&first, &second] {
        browser.click(&format!("a[href=\"/dashboard/devices/{CAMPAIGN}/{d}\"]"));
        let dom = browser.wait_for("the device page", 10, |p| p.contains("class=\"device\""));
        assert!(dom.contains("data-state=\"quarantined\""), "{dom}");
        let row = dom
            .split("<tr data-index=")
            .find(|r| r.contains("<td>quarantined</td>"))
            .unwrap_or_else(|| panic!("no quarantine event for {d}: {dom}"));
        assert!(row.contains("<td>operator:alice</td>"), "{row}");
        assert!(row.contains(&format!("<td>{reason}</td>")), "{row}");
        browser.run("history.back()");
        browser.wait_for("the dashboard", 10, |p| p.contains("devices match"));
    }
    browser.click(&format!(
        "a[href=\"/dashboard/devices/{CAMPAIGN}/{first}\"]"
    ));
    browser.wait_for("the device page", 10, |p| p.contains("class=\"device\""));
    shot(&browser, "device");

    // Live: a change made elsewhere (through the API) shows without a reload.
    browser.open(&format!("{url}/dashboard"));
    browser.run("window.cairnMarker = 42");
    let bearer = format!("Bearer {TOKEN}");
    let third = common::device(11);
    let reply = relay.send(
        "POST",
        &format!("/api/v1/campaigns/{CAMPAIGN}/quarantine"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        &format!(r#"{{"cause":"lost in transit","devices":["{third}"]}}"#),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    browser.wait_for("the live update", 15, |d| {
        d.contains("<td data-state=\"quarantined\">3</td>")
    });
    assert_eq!(
        browser.run("return window.cairnMarker"),
        42,
        "the page reloaded"
    );

    // Forgeries change nothing: a form without the session (the token never given), or with the
    // session and without or with another CSRF value.
    let before = log_size(&relay);
    let dom = browser.source();
    let csrf = csrf_of(&dom, &format!("resume-{CAMPAIGN}"));
    let resume = format!("/dashboard/campaigns/{CAMPAIGN}/resume");
    let form = "application/x-www-form-urlencoded";
    let with_session = format!("cairn_session={session}");
    for (headers, body, expect) in [
        (
            vec![("Content-Type", form)],
            format!("csrf={csrf}&cause=forged"),
            "HTTP/1.1 401",
        ),
        (
            vec![("Content-Type", form), ("Cookie", with_session.as_str())],
            "cause=forged".to_owned(),
            "HTTP/1.1 403",
        ),
        (
            vec![("Content-Type", form), ("Cookie", with_session.as_str())],
            format!("csrf={}&cause=forged", "0".repeat(64)),
            "HTTP/1.1 403",
        ),
    ] {
        let reply = relay.send("POST", &resume, &headers, &body);
        assert!(reply.starts_with(expect), "{expect}: {reply}");
    }
    assert_eq!(log_size(&relay), before);
    assert_eq!(status(&relay), "paused-by-operator");
    // The same request with the session's CSRF value goes through.
    let reply = relay.send(
        "POST",
        &resume,
        &[("Content-Type", form), ("Cookie", &with_session)],
        &format!("csrf={csrf}&cause=freeze+over"),
    );
    assert!(reply.starts_with("HTTP/1.1 303"), "{reply}");
    assert_eq!(status(&relay), "running");
    assert!(log_size(&relay) > before);

    // Signing out ends the session: its cookie no longer acts.
    browser.open(&format!("{url}/dashboard"));
    browser.click("form.sign-out button");
    browser.wait_for("the sign-in form", 10, |d| {
        d.contains("form class=\"sign-in\"")
    });
    let reply = relay.send(
        "POST",
        &format!("/dashboard/campaigns/{CAMPAIGN}/pause"),
        &[("Content-Type", form), ("Cookie", &with_session)],
        &format!("csrf={csrf}&cause=after+sign-out"),
    );
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert_eq!(status(&relay), "running");
}

/// The value of cookie `name` a response sets.
fn set_cookie<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
}

#[test]
fn the_console_works_without_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let signer = common::signer_log(
        &dir.path().join("signer"),
        8,
        0,
        &[("all", 8, 0, 1000, 500, false)],
        common::Policy::default(),
    );
    common::config(dir.path(), "");
    let relay = RelayProcess::start(dir.path());
    relay.import(&signer.vault.export_bundle(0).unwrap().to_cbor(), TOKEN);
    let form = "application/x-www-form-urlencoded";

    // The page sets the sign-in form's CSRF cookie and carries the same value.
    let page = relay.send("GET", "/dashboard", &[], "");
    let csrf = set_cookie(&page, "cairn_signin").unwrap().to_owned();
    assert!(
        page.contains(&format!("name=\"csrf\" value=\"{csrf}\"")),
        "{page}"
    );
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    // Without the cookie, or with another value, signing in is refused.
    let token = TOKEN.replace(' ', "+");
    let reply = relay.send(
        "POST",
        "/dashboard/sign-in",
        &[("Content-Type", form)],
        &format!("csrf={csrf}&token={token}"),
    );
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    let cookie = format!("cairn_signin={csrf}");
    let reply = relay.send(
        "POST",
        "/dashboard/sign-in",
        &[("Content-Type", form), ("Cookie", &cookie)],
        &format!("csrf={csrf}&token={token}"),
    );
    assert!(reply.starts_with("HTTP/1.1 303"), "{reply}");
    let session = set_cookie(&reply, "cairn_session").unwrap().to_owned();
    assert!(
        reply.contains("HttpOnly; Secure; SameSite=Strict"),
        "{reply}"
    );

    // Signed in: the page has the forms; a pause through the form is recorded.
    let cookie = format!("cairn_session={session}");
    let page = relay.send("GET", "/dashboard", &[("Cookie", &cookie)], "");
    let csrf = csrf_of(&page, &format!("pause-{CAMPAIGN}"));
    let reply = relay.send(
        "POST",
        &format!("/dashboard/campaigns/{CAMPAIGN}/pause"),
        &[("Content-Type", form), ("Cookie", &cookie)],
        &format!("csrf={csrf}&cause=no+script+needed"),
    );
    assert!(reply.starts_with("HTTP/1.1 303"), "{reply}");
    assert_eq!(status(&relay), "paused-by-operator");
    let page = relay.send("GET", "/dashboard", &[("Cookie", &cookie)], "");
    assert!(
        page.contains("by operator:alice: no script needed"),
        "{page}"
    );
    assert!(page.contains("class=\"flash\""), "{page}");
}
