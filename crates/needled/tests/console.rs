//! Browser tests of the operator console: the real needled on the sim backend, driven through
//! the console in real Chromium (Debian's `chromium` and `chromium-driver`) over WebDriver.
//!
//! Each test starts needled on a free port with a temporary data directory, starts
//! chromedriver on a free port in its own process group, and drives headless Chromium with
//! fantoccini. The console is judged by what it shows; the rig is judged by the sim's physical
//! truth (`/v1/sim/truth`), never by the console's own numbers.
//!
//! Without Chromium or ChromeDriver the tests print `skipped: <why>` and pass, except under
//! `CI=true`, where a missing browser is a failure. `NEEDLED_CHROMIUM` and
//! `NEEDLED_CHROMEDRIVER` name other binaries. `NEEDLED_UPDATE_SCREENSHOT=1` also writes the
//! screenshot of the running console to `docs/console.png`; every run writes it to
//! `target/tmp/console-running.png` (and a screenshot of any failure beside it).

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use needle_client::harness::{Launch, Running};
use needled::cartridge::{self, Needles, TagData};
use serde_json::{json, Value};

// ---------------------------------------------------------------- the browser, or a skip

struct Browser {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |dir| dir.join(n)))
        .find(|p| p.is_file())
}

fn find_browser() -> Result<Browser, String> {
    let chromium = match std::env::var_os("NEEDLED_CHROMIUM") {
        Some(p) => PathBuf::from(p),
        None => which(&["chromium", "chromium-browser", "google-chrome"]).ok_or(
            "no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH)",
        )?,
    };
    let chromedriver = match std::env::var_os("NEEDLED_CHROMEDRIVER") {
        Some(p) => PathBuf::from(p),
        None => which(&["chromedriver"]).ok_or("no chromedriver found on PATH")?,
    };
    for p in [&chromium, &chromedriver] {
        if !p.is_file() {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    Ok(Browser {
        chromium,
        chromedriver,
    })
}

/// The browser, or `None` after saying why the test is skipped; under `CI=true` a missing
/// browser fails the test.
fn browser_or_skip(test: &str) -> Option<Browser> {
    match find_browser() {
        Ok(b) => Some(b),
        Err(why) => {
            let install = "apt-get install -y chromium chromium-driver";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: CI=true and the browser tests cannot run: {why}. Install it: {install}");
            }
            // Straight to stderr: shown by `cargo test` even when it captures the test's output.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: {why} (to run the browser tests: {install})"
            );
            None
        }
    }
}

// ---------------------------------------------------------------- processes

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// needled on needle-client's harness (ready by its ready file), with its tokens.
struct Needled {
    running: Running,
    base: String,
    operator: String,
    technician: String,
}

impl Needled {
    fn start(data: &Path) -> Needled {
        let config = data.join("test.toml");
        if !config.exists() {
            // A loaded 2-core CI machine runs Chromium beside the 1 kHz control loop: with the
            // default 100 ms dead-man, a starved heartbeat faulted HostTimeout mid-test (seen
            // here). These tests are about the console, so the timeouts are wider.
            let text = "[control]\nmax_tick_gap_ms = 500\nhost_timeout_ms = 1000\nrealtime_priority = false\n";
            std::fs::write(&config, text).unwrap();
        }
        let running = Launch::new(env!("CARGO_BIN_EXE_needled"), &config, data)
            .start()
            .expect("start needled");
        Needled {
            base: running.base(),
            operator: running.token("operator").unwrap(),
            technician: running.token("technician").unwrap(),
            running,
        }
    }

    /// SIGKILLs it.
    fn stop(&mut self) {
        let _ = self.running.kill();
    }

    /// Starts it again on the same port (the console's URL and tokens stay true).
    fn restart(&mut self) {
        self.running.restart().expect("restart needled");
        assert_eq!(self.running.base(), self.base, "the same port");
    }

    /// A technician call to the API, as the test's own instrument.
    fn tech(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        needle_client::Client::new(&self.base, &self.technician)
            .json(method, path, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A cartridge provisioned with the test factory key: (tag hex, chip private key hex).
    fn make_tag(&self, id: &str, lot: &str) -> (String, String) {
        let data = TagData::new(id, lot, Needles::Pins12, "2099-12-31".parse().unwrap()).unwrap();
        let made = cartridge::provision_test(&data).unwrap();
        (made.tag_hex(), made.chip_secret_hex())
    }
}

/// chromedriver in its own process group, so the Chromium it starts goes with it.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(browser: &Browser) -> Driver {
        let port = free_port();
        let child = Command::new(&browser.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = ureq::get(&format!("{url}/status"))
                .timeout(Duration::from_secs(2))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready on {url}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any Chromium left by a failed test.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

async fn open_browser(
    browser: &Browser,
    driver: &Driver,
    profile: &Path,
    downloads: &Path,
) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1024,768",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:loggingPrefs": { "browser": "ALL" },
        "goog:chromeOptions": {
            "binary": browser.chromium,
            "args": args,
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            },
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session in Chromium");
    set_viewport(&client, 1024, 768).await;
    client
}

/// Sizes the window so that the page itself (the viewport) is `width` x `height`.
async fn set_viewport(c: &Client, width: u32, height: u32) {
    c.set_window_size(width, height).await.expect("window size");
    let extra = c
        .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![])
        .await
        .expect("window metrics");
    let dw = u32::try_from(extra[0].as_i64().unwrap_or(0).max(0)).unwrap_or(0);
    let dh = u32::try_from(extra[1].as_i64().unwrap_or(0).max(0)).unwrap_or(0);
    if dw > 0 || dh > 0 {
        c.set_window_size(width + dw, height + dh)
            .await
            .expect("window size");
    }
}

/// Makes the page a phone screen (`width` x `height` CSS pixels, touch, mobile viewport)
/// through ChromeDriver's DevTools bridge: a desktop window cannot be narrower than 500 px.
/// `None` ends the emulation.
async fn emulate_phone(c: &Client, driver: &Driver, size: Option<(u32, u32)>) {
    let session = c.session_id().await.unwrap().expect("a WebDriver session");
    let body = match size {
        Some((width, height)) => json!({
            "cmd": "Emulation.setDeviceMetricsOverride",
            "params": { "width": width, "height": height, "deviceScaleFactor": 2, "mobile": true },
        }),
        None => json!({ "cmd": "Emulation.clearDeviceMetricsOverride", "params": {} }),
    };
    let url = format!("{}/session/{session}/goog/cdp/execute", driver.url);
    let sent = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .timeout(Duration::from_secs(10))
            .send_json(body)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = sent.await.unwrap() {
        panic!("device emulation through chromedriver: {e}");
    }
}

/// Fails on any error the page's scripts raised. Refused requests (4xx) and the requests that
/// failed while the service was down are the API's answers, not script errors.
async fn assert_no_script_errors(c: &Client, driver: &Driver) {
    let session = c.session_id().await.unwrap().expect("a WebDriver session");
    let url = format!("{}/session/{session}/se/log", driver.url);
    let logs = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .timeout(Duration::from_secs(10))
            .send_json(json!({ "type": "browser" }))
            .map_err(|e| e.to_string())?
            .into_json::<Value>()
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
    .expect("the browser's log");
    let entries = logs["value"].as_array().cloned().unwrap_or_default();
    let errors: Vec<&Value> = entries
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or("");
            !m.contains("Failed to load resource") && !m.contains("net::ERR_")
        })
        .collect();
    assert!(
        errors.is_empty(),
        "script errors in the console: {errors:#?}"
    );
}

/// Runs `body` with a browser, then closes the browser whatever happened; a failure leaves a
/// screenshot in `target/tmp/` before the panic goes on.
async fn with_browser<F>(test: &str, client: Client, body: F)
where
    F: std::future::Future<Output = ()>,
{
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    if outcome.is_err() {
        if let Ok(png) = client.screenshot().await {
            let path = artifacts().join(format!("{test}-failure.png"));
            let _ = std::fs::write(&path, png);
            let _ = writeln!(
                std::io::stderr(),
                "{test}: screenshot of the failure: {}",
                path.display()
            );
        }
    }
    let _ = client.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------- page helpers

const WAIT: Duration = Duration::from_secs(15);

/// Polls `script` (the body of a function returning a value) until it returns something
/// truthy; returns that value.
async fn wait_js(c: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{what}: script failed: {e}"));
        let truthy =
            !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
        if truthy {
            return v;
        }
        if Instant::now() > deadline {
            let message = text(c, "#message").await;
            panic!("timed out waiting for {what}; last value {v}; console message: {message:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_text(c: &Client, css: &str, wanted: &str) {
    let script = format!(
        "const e = document.querySelector({css:?}); return e && e.offsetParent !== null && e.textContent.includes({wanted:?});"
    );
    wait_js(c, &format!("{css} to show {wanted:?}"), &script).await;
}

async fn wait_visible(c: &Client, css: &str) {
    let script = format!(
        "const e = document.querySelector({css:?}); return !!e && e.offsetParent !== null;"
    );
    wait_js(c, &format!("{css} to show"), &script).await;
}

async fn text(c: &Client, css: &str) -> String {
    let script =
        format!("const e = document.querySelector({css:?}); return e ? e.textContent : null;");
    c.execute(&script, vec![])
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn visible(c: &Client, css: &str) -> bool {
    let script = format!(
        "const e = document.querySelector({css:?}); return !!e && e.offsetParent !== null;"
    );
    c.execute(&script, vec![]).await.unwrap() == json!(true)
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("find {css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

/// The number at the start of an element's text ("119.8 Hz" -> 119.8).
async fn number(c: &Client, css: &str) -> f64 {
    let t = text(c, css).await;
    t.split_whitespace()
        .next()
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or(f64::NAN)
}

async fn sign_in(c: &Client, token: &str) {
    fill(c, "#token", token).await;
    click(c, "#login-button").await;
    wait_js(
        c,
        "the console after signing in",
        "return !document.getElementById('main').hidden;",
    )
    .await;
    wait_text(c, "#link", "Live").await;
    assert!(
        !visible(c, "#login-view").await,
        "the login form goes once signed in"
    );
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_runs_a_whole_session_on_the_sim_and_clears_an_estop_fault() {
    const TEST: &str = "console_runs_a_whole_session_on_the_sim_and_clears_an_estop_fault";
    let Some(browser) = browser_or_skip(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = Needled::start(dir.path());
    let driver = Driver::start(&browser);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let c = open_browser(&browser, &driver, &dir.path().join("profile"), &downloads).await;
    let (tag_hex, chip_secret) = n.make_tag("C-BROWSER-1", "LOT-WEB");
    let n = &n;
    let driver = &driver;
    let downloads = &downloads;
    with_browser(TEST, c.clone(), async move {
        c.goto(&n.base).await.unwrap();
        wait_visible(&c, "#login-form").await;
        sign_in(&c, &n.technician).await;
        // The form offers the rig's configured stroke-rate range.
        assert_eq!(text(&c, "#rate-hint").await, "80 to 160 Hz");
        assert!(visible(&c, "#sim-panel").await, "the sim panel shows on the sim backend");

        // Home the depth axis.
        click(&c, "#home").await;
        wait_text(&c, "#state", "Idle").await;

        // Create a session: area and checklist.
        fill(&c, "#operator", "dr-browser").await;
        fill(&c, "#subject", "subject-web-001").await;
        c.find(Locator::Css("#area")).await.unwrap().select_by_value("face").await.unwrap();
        // Every item but consent: the session card then offers it, to confirm before arming.
        for box_ in c.find_all(Locator::Css("#checklist input[type=checkbox]:not(#check-consent)")).await.unwrap() {
            box_.click().await.unwrap();
        }
        click(&c, "#create").await;
        wait_text(&c, "#s-state", "created").await;
        wait_visible(&c, "#checklist-form").await;
        let missing = c.find_all(Locator::Css("#checklist-missing input[type=checkbox]")).await.unwrap();
        assert_eq!(missing.len(), 1, "only consent is missing");
        click(&c, "#missing-consent").await;
        click(&c, "#confirm-checklist").await;
        wait_js(&c, "the checklist form to go", "return document.getElementById('checklist-form').hidden;").await;
        let id = text(&c, "#s-id").await.trim_start_matches('#').parse::<i64>().expect("a session id");

        // Seat a cartridge from the sim panel and bind it.
        fill(&c, "#tag-hex", &tag_hex).await;
        fill(&c, "#chip-secret", &chip_secret).await;
        click(&c, "#sim-seat").await;
        wait_js(&c, "the cartridge interlock to clear", "return document.getElementById('interlock-cartridge_missing').className === 'ok';").await;
        click(&c, "#bind").await;
        wait_text(&c, "#s-state", "bound").await;
        wait_text(&c, "#cart-id", "C-BROWSER-1").await;
        wait_text(&c, "#cart-lot", "LOT-WEB").await;

        // Too deep for the face: refused with the API's message, nothing changes.
        fill(&c, "#depth", "2000").await;
        fill(&c, "#rate", "120").await;
        click(&c, "#arm").await;
        wait_text(&c, "#message", "depth 2000 um is outside 0..=1500 um for area 'face'").await;
        assert!(text(&c, "#message").await.contains("depth_above_area_ceiling"));
        assert_eq!(text(&c, "#s-state").await, "bound");

        // Arm within the ceiling, start, and see it run.
        fill(&c, "#depth", "1000").await;
        click(&c, "#arm").await;
        wait_text(&c, "#s-state", "armed").await;
        wait_text(&c, "#state", "Armed").await;
        wait_text(&c, "#depth-measured", "1000 µm").await;
        click(&c, "#start").await;
        wait_text(&c, "#state", "Running").await;
        wait_text(&c, "#s-state", "running").await;
        wait_js(&c, "the measured rate near 120 Hz", "const t = document.getElementById('rate-measured').textContent; return Math.abs(parseFloat(t) - 120) < 3;").await;
        let truth = n.tech("GET", "/v1/sim/truth", None);
        assert_eq!(truth["motor_powered"], true, "the console says running: the rig must agree: {truth}");
        assert!((truth["rate_hz"].as_f64().unwrap() - 120.0).abs() < 3.0, "{truth}");

        // With NEEDLED_UPDATE_SCREENSHOT=1, slower, so that the plot shows each step.
        let update_docs = std::env::var("NEEDLED_UPDATE_SCREENSHOT").as_deref() == Ok("1");
        let docs_pause = || tokio::time::sleep(Duration::from_secs(if update_docs { 12 } else { 0 }));
        docs_pause().await;

        // Change the rate within limits while running.
        fill(&c, "#depth", "").await;
        fill(&c, "#rate", "140").await;
        click(&c, "#apply").await;
        wait_text(&c, "#rate-setpoint", "140.0 Hz").await;
        wait_js(&c, "the measured rate near 140 Hz", "const t = document.getElementById('rate-measured').textContent; return Math.abs(parseFloat(t) - 140) < 3;").await;
        docs_pause().await;
        // And the depth, within the area's ceiling.
        fill(&c, "#rate", "").await;
        fill(&c, "#depth", "1200").await;
        click(&c, "#apply").await;
        wait_text(&c, "#depth-setpoint", "1200 µm").await;
        wait_text(&c, "#depth-measured", "1200 µm").await;
        let truth = n.tech("GET", "/v1/sim/truth", None);
        assert!((truth["depth_um"].as_f64().unwrap() - 1200.0).abs() <= 2.5, "{truth}");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(number(&c, "#strokes").await > 100.0, "strokes counted");
        assert!(text(&c, "#timer").await.contains(" s"), "the session timer runs");
        let points = c
            .execute("return document.querySelectorAll('#plot canvas').length;", vec![])
            .await
            .unwrap();
        assert_eq!(points, json!(1), "the plot is drawn");
        // The screenshot of the running console: the whole page at tablet width.
        docs_pause().await;
        let height = c
            .execute("window.scrollTo(0, 0); document.activeElement.blur(); return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap();
        set_viewport(&c, 1024, u32::try_from(height.as_u64().unwrap_or(768).clamp(768, 2400)).unwrap()).await;
        tokio::time::sleep(Duration::from_millis(600)).await; // the plot follows the new size
        let png = c.screenshot().await.unwrap();
        set_viewport(&c, 1024, 768).await;
        std::fs::write(artifacts().join("console-running.png"), &png).unwrap();
        if update_docs {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console.png");
            std::fs::write(&docs, &png).unwrap();
        }

        // Pause and resume.
        click(&c, "#pause").await;
        wait_text(&c, "#s-state", "paused").await;
        wait_text(&c, "#state", "Paused").await;
        click(&c, "#start").await;
        wait_text(&c, "#s-state", "running").await;

        // The sim's E-stop: a fault appears, the motor stops, the session must be re-armed.
        click(&c, "#sim-estop-press").await;
        wait_text(&c, "#state", "E-stop").await;
        wait_text(&c, "#fault-alert", "(estop)").await;
        wait_text(&c, "#faults", "E-stop pressed").await;
        std::fs::write(artifacts().join("console-estop.png"), c.screenshot().await.unwrap()).unwrap();
        assert_eq!(n.tech("GET", "/v1/sim/truth", None)["motor_powered"], false, "E-stop: motor off on the rig");
        wait_text(&c, "#s-state", "bound").await;
        // Clearing while the E-stop is still pressed is refused, with the API's reason.
        fill(&c, "#clear-reason", "E-stop drill").await;
        click(&c, "#clear").await;
        wait_text(&c, "#message", "Refused (clear the faults)").await;
        click(&c, "#sim-estop-release").await;
        wait_text(&c, "#state", "Fault").await;
        // A reason is required.
        fill(&c, "#clear-reason", "").await;
        click(&c, "#clear").await;
        wait_text(&c, "#message", "reason_required").await;
        fill(&c, "#clear-reason", "E-stop drill finished").await;
        click(&c, "#clear").await;
        wait_js(&c, "the fault alert to go", "return document.getElementById('fault-alert').hidden;").await;
        wait_text(&c, "#faults", "None").await;

        // End the session: the cartridge is spent.
        fill(&c, "#end-reason", "treatment complete").await;
        click(&c, "#end").await;
        wait_text(&c, "#s-state", "ended").await;
        wait_text(&c, "#cart-state", "spent").await;

        // Download the report, both formats.
        click(&c, "#report-json").await;
        click(&c, "#report-csv").await;
        let json_file = downloads.join(format!("session-{id}-report.json"));
        let csv_file = downloads.join(format!("session-{id}-report.csv"));
        let deadline = Instant::now() + WAIT;
        while !(json_file.is_file() && csv_file.is_file()) {
            assert!(Instant::now() < deadline, "reports not downloaded: {:?}", std::fs::read_dir(downloads).unwrap().collect::<Vec<_>>());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).unwrap();
        assert_eq!(report["session_id"], json!(id), "{report}");
        assert_eq!(report["cartridge"]["id"], "C-BROWSER-1", "{report}");
        assert_eq!(report["state"], "ended", "{report}");
        let csv = std::fs::read_to_string(&csv_file).unwrap();
        assert!(csv.starts_with("at_ms,kind") && csv.contains("session_created") && csv.lines().count() > 5, "{csv}");

        // The spent cartridge out, a new one in with one click: the service signs its tag.
        click(&c, "#sim-pull").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.tech("GET", "/v1/sim/truth", None)["cartridge_seated"] != false {
            assert!(Instant::now() < deadline, "the pull did not reach the rig");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        click(&c, "#sim-seat-new").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while n.tech("GET", "/v1/sim/truth", None)["cartridge_seated"] != true {
            assert!(Instant::now() < deadline, "the new cartridge did not reach the rig");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Log out: the token is gone and the console with it.
        click(&c, "#logout").await;
        wait_js(&c, "the login form after logging out", "return !document.getElementById('login-view').hidden;").await;
        assert!(!visible(&c, "#main").await);
        let kept = c.execute("return sessionStorage.getItem('needled.console.token');", vec![]).await.unwrap();
        assert_eq!(kept, Value::Null, "the token is forgotten on logout");
        assert_no_script_errors(&c, driver).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_needs_a_token_and_shows_and_recovers_a_lost_telemetry_stream() {
    const TEST: &str = "console_needs_a_token_and_shows_and_recovers_a_lost_telemetry_stream";
    let Some(browser) = browser_or_skip(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut n = Needled::start(dir.path());
    let driver = Driver::start(&browser);
    let downloads = dir.path().join("downloads");
    let c = open_browser(&browser, &driver, &dir.path().join("profile"), &downloads).await;
    let n = &mut n;
    let driver = &driver;
    with_browser(TEST, c.clone(), async move {
        c.goto(&n.base).await.unwrap();
        // Nothing but the login form without a token; a wrong token is refused by the API.
        wait_visible(&c, "#login-form").await;
        assert!(!visible(&c, "#main").await, "no console without a token");
        fill(&c, "#token", "not-a-token").await;
        click(&c, "#login-button").await;
        wait_text(&c, "#login-error", "unknown token").await;
        assert!(!visible(&c, "#main").await);

        // Keyboard only: type the operator token and press Enter.
        let token = c.find(Locator::Css("#token")).await.unwrap();
        token.clear().await.unwrap();
        token.send_keys(&format!("{}\u{E007}", n.operator)).await.unwrap();
        wait_text(&c, "#link", "Live").await;
        wait_text(&c, "#who", "operator").await;
        // Tab moves focus and the focus is visible.
        let focus = c.active_element().await.unwrap();
        focus.send_keys("\u{E004}").await.unwrap();
        let outline = c
            .execute("const s = getComputedStyle(document.activeElement); return s.outlineStyle + ' ' + s.outlineWidth;", vec![])
            .await
            .unwrap();
        assert!(!outline.as_str().unwrap_or("none").starts_with("none"), "focus outline: {outline}");

        // An operator may not use the sim controls: the API's refusal is shown.
        assert!(visible(&c, "#sim-panel").await);
        wait_text(&c, "#sim-role-note", "technician").await;
        click(&c, "#sim-estop-press").await;
        wait_text(&c, "#message", "this needs a technician token").await;

        // Large controls and no sideways scrolling on a tablet and on a phone.
        for (w, h, phone) in [(1024u32, 768u32, false), (390, 844, true)] {
            if phone {
                emulate_phone(&c, driver, Some((w, h))).await;
            } else {
                set_viewport(&c, w, h).await;
            }
            let check = wait_js(
                &c,
                &format!("the layout at {w}x{h}"),
                &"const wide = document.documentElement.scrollWidth <= window.innerWidth + 1;
                 const small = [...document.querySelectorAll('button, input:not([type=checkbox]), select, textarea')]
                   .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 47.5)
                   .map(e => e.id || e.textContent);
                 const over = [...document.querySelectorAll('body *')]
                   .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > window.innerWidth + 1)
                   .map(e => e.id || e.className || e.tagName).slice(0, 8);
                 return window.innerWidth === WIDTH && JSON.stringify({ wide, small, over, width: window.innerWidth });"
                    .replace("WIDTH", &w.to_string()),
            )
            .await;
            let check: Value = serde_json::from_str(check.as_str().unwrap()).unwrap();
            assert_eq!(check["wide"], true, "horizontal overflow at {w}x{h}: {check}");
            assert_eq!(check["small"], json!([]), "controls under 48 px at {w}x{h}: {check}");
            let png = c.screenshot().await.unwrap();
            std::fs::write(artifacts().join(format!("console-{w}x{h}.png")), png).unwrap();
        }
        emulate_phone(&c, driver, None).await;
        set_viewport(&c, 1024, 768).await;

        // The service goes away: the console says so and marks the data stale...
        n.stop();
        wait_text(&c, "#link", "lost").await;
        wait_js(&c, "the stale-data warning", "return !document.getElementById('stale').hidden;").await;
        // ...and it reconnects by itself when the service is back (same port, same tokens).
        n.restart();
        wait_text(&c, "#link", "Live").await;
        wait_js(&c, "the stale-data warning to go", "return document.getElementById('stale').hidden;").await;
        wait_text(&c, "#state", "Boot").await;

        // The Operator field is optional, prefilled with the signed-in person's name. Left
        // empty it is no statement: the session is created (it used to send "" and be
        // refused), and its operator is the token's person.
        let who = wait_js(&c, "the prefilled operator", "return document.getElementById('operator').value;").await;
        assert!(text(&c, "#who").await.contains(who.as_str().unwrap()), "prefilled with {who}");
        c.find(Locator::Css("#operator")).await.unwrap().clear().await.unwrap();
        fill(&c, "#subject", "subject-web-002").await;
        c.find(Locator::Css("#area")).await.unwrap().select_by_value("face").await.unwrap();
        for box_ in c.find_all(Locator::Css("#checklist input[type=checkbox]")).await.unwrap() {
            box_.click().await.unwrap();
        }
        click(&c, "#create").await;
        wait_text(&c, "#s-state", "created").await;
        assert_eq!(text(&c, "#s-operator").await, who.as_str().unwrap());
        assert_no_script_errors(&c, driver).await;
    })
    .await;
}

// ---------------------------------------------------------------- the printed record

/// `[width, height]` of every page of a PDF, from its `/MediaBox` entries (points).
fn pdf_pages(pdf: &[u8]) -> Vec<(f64, f64)> {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/MediaBox")
        .filter_map(|(i, _)| {
            let rest = &text[i..];
            let open = rest.find('[')?;
            let close = rest.find(']')?;
            let nums: Vec<f64> = rest[open + 1..close]
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            (nums.len() == 4).then(|| (nums[2] - nums[0], nums[3] - nums[1]))
        })
        .collect()
}

/// Waits for the sim rig's state (`/v1/status`) as the test's own instrument.
fn wait_rig(n: &Needled, what: &str, f: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = n.tech("GET", "/v1/status", None);
        if f(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_printed_record_of_a_plan_session_has_every_part_on_a4_and_letter() {
    const TEST: &str = "the_printed_record_of_a_plan_session_has_every_part_on_a4_and_letter";
    let Some(browser) = browser_or_skip(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = Needled::start(dir.path());
    // A session of a plan, armed deeper than planned (an override), faulted by a jam and
    // cleared with a reason, then ended: every part of the record has something to show.
    n.tech("POST", "/v1/home", None);
    wait_rig(&n, "homed", |s| s["state"] == "Idle" && s["homed"] == true);
    let plan = n.tech(
        "POST",
        "/v1/plans",
        Some(
            json!({ "subject_ref": "subj-print", "areas": ["face"], "min_days": 28,
                     "max_days": 42, "reason": "atrophic scars",
                     "sessions": [{ "depth_um": 500, "rate_mhz": 100_000 },
                                  { "depth_um": 750, "rate_mhz": 110_000 }] }),
        ),
    );
    let plan_id = plan["id"].as_i64().unwrap();
    let config = needled::config::parse("", "defaults").unwrap();
    let checklist: serde_json::Map<String, Value> = config
        .session
        .checklist
        .iter()
        .filter(|c| c.required)
        .map(|c| (c.id.clone(), Value::Bool(true)))
        .collect();
    let s = n.tech(
        "POST",
        "/v1/sessions",
        Some(
            json!({ "operator": "dr-print", "subject_ref": "subj-print", "area": "face",
                     "checklist": checklist, "plan_id": plan_id }),
        ),
    );
    let id = s["id"].as_i64().unwrap();
    // The record names the authenticated person (the token's), never the body's "operator".
    let operator = s["operator"].as_str().unwrap().to_owned();
    assert_ne!(operator, "dr-print", "{s}");
    let (tag, chip_secret) = n.make_tag("C-PRINT-1", "LOT-PRT");
    n.tech(
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "seat_cartridge", "tag_hex": tag, "chip_secret_hex": chip_secret })),
    );
    n.tech("POST", &format!("/v1/sessions/{id}/cartridge"), None);
    n.tech(
        "POST",
        &format!("/v1/sessions/{id}/arm"),
        Some(json!({ "depth_um": 600, "rate_mhz": 100_000,
                     "override_reason": "thicker scar at the cheek" })),
    );
    wait_rig(&n, "armed", |s| {
        s["state"] == "Armed" && s["depth"]["moving"] == false
    });
    n.tech("POST", &format!("/v1/sessions/{id}/start"), None);
    wait_rig(&n, "running", |s| s["state"] == "Running");
    // A rate change mid-session, so the plot has a step; judged by the rig's stroke count.
    let strokes = |n: &Needled| {
        n.tech("GET", "/v1/sim/truth", None)["strokes"]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while strokes(&n) < 100 {
        assert!(Instant::now() < deadline, "the rig does not stroke");
        std::thread::sleep(Duration::from_millis(20));
    }
    n.tech(
        "PUT",
        &format!("/v1/sessions/{id}/setpoints"),
        Some(json!({ "rate_mhz": 130_000 })),
    );
    while strokes(&n) < 250 {
        assert!(Instant::now() < deadline, "the rig does not stroke");
        std::thread::sleep(Duration::from_millis(20));
    }
    n.tech(
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "jam", "on": true })),
    );
    wait_rig(&n, "the jam's fault", |s| s["state"] == "Fault");
    // As an operator would: clear once the fault is on the record (the monitor's next pass
    // writes it; a clear before that leaves the fault only in the clear's own event).
    let deadline = Instant::now() + Duration::from_secs(30);
    while n.tech("GET", &format!("/v1/sessions/{id}/report"), None)["faults"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the fault is never recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
    n.tech(
        "POST",
        "/v1/sim/inject",
        Some(json!({ "action": "jam", "on": false })),
    );
    n.tech(
        "POST",
        "/v1/faults/clear",
        Some(json!({ "reason": "hair caught in the cam, removed" })),
    );
    n.tech(
        "POST",
        &format!("/v1/sessions/{id}/end"),
        Some(json!({ "reason": "treatment complete" })),
    );

    let driver = Driver::start(&browser);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let c = open_browser(&browser, &driver, &dir.path().join("profile"), &downloads).await;
    let n = &n;
    let driver = &driver;
    with_browser(TEST, c.clone(), async move {
        // The record as the console opens it: fetched with the bearer token (never in a URL)
        // and written into the page, then printed by the browser.
        c.goto(&n.base).await.unwrap();
        let script = format!(
            "const done = arguments[arguments.length - 1];
             fetch('/v1/sessions/{id}/record', {{ headers: {{ Authorization: 'Bearer {}' }} }})
               .then(r => r.text())
               .then(html => {{ document.open(); document.write(html); document.close(); done(true); }})
               .catch(e => done(String(e)));",
            n.operator
        );
        assert_eq!(c.execute_async(&script, vec![]).await.unwrap(), json!(true));
        // Judged as printed: the print media's layout.
        let session = c.session_id().await.unwrap().expect("a WebDriver session");
        let url = format!("{}/session/{session}/goog/cdp/execute", driver.url);
        tokio::task::spawn_blocking(move || {
            ureq::post(&url)
                .send_json(json!({ "cmd": "Emulation.setEmulatedMedia", "params": { "media": "print" } }))
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap()
        .expect("print media emulation");
        for (css, wanted) in [
            ("#record-plan", "session 1 of 2 in plan"),
            ("#record-operator", operator.as_str()),
            ("#record-checklist", "informed consent"),
            ("#record-cartridge", "C-PRINT-1"),
            ("#record-cartridge", "LOT-PRT"),
            ("#record-overrides", "thicker scar at the cheek"),
            ("#record-overrides", "depth_above_plan"),
            ("#record-faults", "hair caught in the cam, removed"),
            ("#record-aftercare", "24 to 48 hours"),
        ] {
            wait_text(&c, css, wanted).await;
        }
        let fault_rows = c
            .execute("return document.querySelectorAll('#record-faults tr').length;", vec![])
            .await
            .unwrap();
        assert!(fault_rows.as_u64().unwrap_or(0) >= 2, "a header and the jam's fault");
        let paths = c
            .execute("return document.querySelectorAll('svg#plot path.depth, svg#plot path.rate').length;", vec![])
            .await
            .unwrap();
        assert_eq!(paths, json!(2), "the depth and rate lines are drawn");
        let faults = c
            .execute("return document.querySelectorAll('svg#plot line.fault').length;", vec![])
            .await
            .unwrap();
        assert!(faults.as_u64().unwrap_or(0) >= 1, "the fault is marked on the plot");
        // The browser's print makes the PDF, on A4 and on Letter.
        for (size, w, h) in [
            (fantoccini::wd::PrintSize::A4, 595.3, 841.9),
            (fantoccini::wd::PrintSize::US_LETTER, 612.0, 792.0),
        ] {
            let config = fantoccini::wd::PrintConfiguration::builder()
                .size(size)
                .build()
                .unwrap();
            let pdf = c.print(config).await.expect("print to PDF");
            assert!(pdf.starts_with(b"%PDF-"), "a PDF");
            let pages = pdf_pages(&pdf);
            assert!(!pages.is_empty() && pages.len() <= 3, "pages: {pages:?}");
            for (pw, ph) in pages {
                assert!((pw - w).abs() < 2.0 && (ph - h).abs() < 2.0, "page {pw}x{ph}, wanted {w}x{h}");
            }
            std::fs::write(artifacts().join(format!("record-{w}.pdf")), &pdf).unwrap();
        }
        // The screenshot for the README: the record on screen.
        tokio::task::spawn_blocking({
            let url = format!("{}/session/{session}/goog/cdp/execute", driver.url);
            move || {
                ureq::post(&url)
                    .send_json(json!({ "cmd": "Emulation.setEmulatedMedia", "params": { "media": "" } }))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .unwrap()
        .expect("screen media again");
        let height = c
            .execute("window.scrollTo(0, 0); return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap();
        set_viewport(&c, 900, u32::try_from(height.as_u64().unwrap_or(768).clamp(768, 2400)).unwrap()).await;
        let png = c.screenshot().await.unwrap();
        std::fs::write(artifacts().join("record.png"), &png).unwrap();
        if std::env::var("NEEDLED_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/record.png");
            std::fs::write(&docs, &png).unwrap();
        }
    })
    .await;
}
