//! needled: the host service of the needle pen.
//!
//! `cargo run --release -p needled` starts it on the simulated rig with
//! `config/default.toml`, bound to 127.0.0.1:7878, data in `./data`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use needle_core::units::MilliHertz;
use needle_core::Controller;
use needle_sim::SimParams;
use needled::api::{self, AppState};
use needled::config::{self, Backend, Config, LogFormat};
use needled::control::{self, LoopConfig};
use needled::hal::sim::SimBackend;
use needled::session::{ChecklistSpec, MonitorHealth, Policy, Service};
use needled::startup::{self, Records};
use needled::store::CartridgeLimits;

/// The needle pen host service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Validate this configuration file and exit (0 if valid).
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Log format: human or json (overrides the file).
    #[arg(long)]
    log_format: Option<String>,
    /// Address to bind (overrides the file; the loopback rule still applies).
    #[arg(long)]
    bind: Option<std::net::SocketAddr>,
    /// Data directory (overrides the file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Drive the outputs the configuration's [hardware] names to their safe levels (motor
    /// enable low, PWM duty 0 and disabled, STEP, DIR and charge pump low), report what was
    /// done and exit: 0 when every output is safe. Opens no ledger, key or tokens. Run by
    /// systemd's ExecStopPost= after any exit of the service.
    #[arg(long)]
    safe_outputs: bool,
    /// Print the API's OpenAPI 3.1 document (what `GET /v1/openapi.json` serves) and exit:
    /// `needled --openapi > docs/openapi.json` regenerates the checked-in copy.
    #[arg(long)]
    openapi: bool,
    /// Once the API listens, write `{"address": "IP:PORT", "pid": N}` to this file (written
    /// to a temporary name and renamed, so a reader never sees half of it): how a test, a
    /// bench or a jig that binds port 0 learns the address and that needled is ready.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.check_config {
        return match config::load(file) {
            Ok(c) => {
                for w in c.warnings() {
                    println!("warning: {w}");
                }
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        };
    }
    if args.safe_outputs {
        return safe_outputs(&args.config);
    }
    if args.openapi {
        return match needled::api::openapi_document().to_pretty_json() {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("openapi: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config_sha256 = std::fs::read(&args.config)
        .map(|b| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&b)))
        .unwrap_or_default();
    let mut config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("needled: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(bind) = args.bind {
        config.service.bind = bind;
    }
    if let Some(dir) = args.data_dir {
        config.service.data_dir = dir;
    }
    // The file's data_dir is resolved by config::load; resolve the override the same way.
    if config.service.data_dir.is_relative() {
        match std::env::current_dir() {
            Ok(cwd) => config.service.data_dir = cwd.join(&config.service.data_dir),
            Err(e) => {
                eprintln!("needled: cannot resolve the data dir: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = config.validate() {
        eprintln!("needled: {}: {e}", args.config.display());
        return ExitCode::from(2);
    }
    let json = match args.log_format.as_deref() {
        Some("json") => true,
        Some("human") => false,
        Some(other) => {
            eprintln!("needled: --log-format {other}: expected human or json");
            return ExitCode::from(2);
        }
        None => config.service.log_format == LogFormat::Json,
    };
    init_logging(json);
    // Before any other thread: they inherit the affinity that keeps them off control.cpu.
    if let Err(e) = needled::realtime::prepare(&config.control) {
        tracing::error!("{e}");
        eprintln!("needled: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, config_sha256, args.ready_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("needled: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `needled --safe-outputs`: see [`needled::hal::safe`].
fn safe_outputs(config: &std::path::Path) -> ExitCode {
    let hardware = match config::load_hardware(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("needled --safe-outputs: {e}");
            return ExitCode::from(2);
        }
    };
    let report = needled::hal::safe::drive_outputs_safe(&hardware);
    print!("{report}");
    if report.is_safe() {
        return ExitCode::SUCCESS;
    }
    let failed: Vec<String> = report
        .failures()
        .map(|s| format!("{} ({})", s.output, s.device))
        .collect();
    eprintln!(
        "needled --safe-outputs: NOT SAFE: could not drive {}",
        failed.join(", ")
    );
    ExitCode::FAILURE
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a file, a pipe or journald gets plain text, never ESC
    // sequences (and none with NO_COLOR set, as no-color.org asks).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn policy(config: &Config) -> Policy {
    Policy {
        areas: config
            .areas
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    needle_core::units::Micrometers(i32::try_from(a.max_depth_um).unwrap_or(0)),
                )
            })
            .collect(),
        checklist: config
            .session
            .checklist
            .iter()
            .map(|c| ChecklistSpec {
                id: c.id.clone(),
                text: c.text.clone(),
                required: c.required,
            })
            .collect(),
        time_limit: Duration::from_secs(u64::from(config.session.time_limit_min) * 60),
        area_time_limits: config
            .areas
            .iter()
            .filter_map(|(name, a)| {
                a.time_limit_min
                    .map(|m| (name.clone(), Duration::from_secs(u64::from(m) * 60)))
            })
            .collect(),
        warning_before: Duration::from_secs(u64::from(config.session.warning_before_min) * 60),
        min_interval: Duration::from_secs(u64::from(config.session.min_interval_days) * 86_400),
        limits: CartridgeLimits {
            max_run_ms: u64::from(config.cartridge.max_run_min) * 60_000,
            max_strokes: config.cartridge.max_strokes,
        },
        post_care: config.session.post_care.clone(),
        rate_range: {
            let core = config.controller_config();
            (core.stroke.rate_min, core.stroke.rate_max)
        },
        numbing: (config.session.numbing_wait_min > 0).then(|| needled::session::Numbing {
            wait: Duration::from_secs(u64::from(config.session.numbing_wait_min) * 60),
        }),
    }
}

/// The rig as opened at start-up, every output at its safe level.
enum Rig {
    Sim(SimBackend),
    /// A pen MCU across a serial link: nothing on this host to drive safe.
    Link,
    #[cfg(feature = "rppal")]
    Rppal(
        Box<needled::hal::rppal::RppalRig>,
        Box<dyn needled::hal::CartridgeChip>,
    ),
    #[cfg(feature = "linux")]
    Linux(
        Box<needled::hal::linux::LinuxRig>,
        Box<dyn needled::hal::CartridgeChip>,
    ),
}

/// Opens the hardware the configuration names. Every backend claims its outputs at their
/// safe levels (motor enable low first, PWM at duty 0, STEP, DIR and charge pump low).
fn open_rig(config: &Config) -> Result<Rig, String> {
    match config.hardware.backend {
        Backend::Sim => {
            // The simulated charge-pump monostable lasts max_tick_gap (at least 10 ms): the
            // sim runs against the wall clock on machines without real-time scheduling, and a
            // shorter pulse would cut the motor at every scheduling hiccup the controller itself
            // tolerates. A needled that stops ticking still loses motor power within it.
            let safety = config.controller_config().safety;
            let pump_hold = SimParams::default()
                .charge_pump_hold
                .map(|hold| hold.max(safety.max_tick_gap));
            let params = SimParams {
                load_nm: SimParams::default().load_nm * f64::from(config.sim.motor_load_permille)
                    / 1000.0,
                charge_pump_hold: pump_hold,
                ..SimParams::default()
            };
            let sim = SimBackend::new(params);
            if config.sim.cartridge_seated_at_start {
                sim.seat_cartridge(None);
            }
            Ok(Rig::Sim(sim))
        }
        Backend::Link => Ok(Rig::Link),
        #[cfg(feature = "rppal")]
        Backend::Rppal => {
            let rig = needled::hal::rppal::open(config).map_err(|e| e.to_string())?;
            let tags = needled::hal::rppal::open_tag_reader(config).map_err(|e| e.to_string())?;
            Ok(Rig::Rppal(Box::new(rig), tags))
        }
        #[cfg(feature = "linux")]
        Backend::Linux => {
            let rig = needled::hal::linux::open(config).map_err(|e| e.to_string())?;
            let tags = needled::hal::linux::open_tag_reader(config).map_err(|e| e.to_string())?;
            Ok(Rig::Linux(Box::new(rig), tags))
        }
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "hardware.backend = \"{0}\" but needled was built without it: rebuild with --features {0}",
            other.as_str()
        )),
    }
}

async fn run(
    config: Config,
    config_sha256: String,
    ready_file: Option<PathBuf>,
) -> Result<(), String> {
    let data_dir = config.service.data_dir.clone();
    // The hardware first, at its safe levels: a start that fails on the ledger, the key or
    // the tokens (or is killed) still leaves the pins safe.
    let (rig, records) = startup::open(&config, open_rig)?;
    let Records {
        store,
        trust,
        tokens,
        token_file,
    } = records;
    let core = config.controller_config();
    let loop_config = LoopConfig {
        period: Duration::from_micros(core.safety.tick_period.0),
        realtime: config.control.realtime_priority,
        cpu: config.control.cpu,
    };

    let (control, sim, tags): (
        control::ControlHandle,
        Option<SimBackend>,
        Box<dyn needled::hal::CartridgeChip>,
    ) = match rig {
        Rig::Sim(sim) => {
            let ctrl = Controller::new(sim.rig.hardware(), core)
                .map_err(|e| format!("controller config: {e}"))?;
            let clock = sim.clock(control::monotonic_now());
            let handle = control::spawn(ctrl, clock, loop_config)
                .map_err(|e| format!("control thread: {e}"))?;
            let tags = Box::new(sim.tag.clone());
            (handle, Some(sim), tags)
        }
        // The pen MCU drives its own outputs and keeps them safe; the link opens here.
        Rig::Link => {
            let (handle, tags) = needled::hal::link::spawn(
                config.link.clone(),
                core,
                config.control.realtime_priority,
            )?;
            (handle, None, Box::new(tags))
        }
        #[cfg(feature = "rppal")]
        Rig::Rppal(rig, tags) => {
            let ctrl =
                Controller::new(*rig, core).map_err(|e| format!("controller config: {e}"))?;
            let handle = control::spawn(ctrl, control::Monotonic, loop_config)
                .map_err(|e| format!("control thread: {e}"))?;
            (handle, None, tags)
        }
        #[cfg(feature = "linux")]
        Rig::Linux(rig, tags) => {
            let ctrl =
                Controller::new(*rig, core).map_err(|e| format!("controller config: {e}"))?;
            let handle = control::spawn(ctrl, control::Monotonic, loop_config)
                .map_err(|e| format!("control thread: {e}"))?;
            (handle, None, tags)
        }
    };
    tracing::info!(
        backend = config.hardware.backend.as_str(),
        rate_hz = 1_000_000 / core.safety.tick_period.0.max(1),
        max_rate_hz = MilliHertz(core.stroke.rate_max.0).as_hz(),
        "control loop started"
    );

    let service = Arc::new(
        Service::new(
            control,
            store,
            trust,
            config.cartridge.chip_required,
            tags,
            policy(&config),
            sim,
        )
        .map_err(|e| e.to_string())?
        .with_service_stall(Duration::from_millis(u64::from(
            config.control.service_stall_ms,
        ))),
    );
    spawn_heartbeat(
        &service,
        Duration::from_micros(core.safety.host_timeout.0 / 5),
        config.control.realtime_priority,
    )?;
    spawn_monitor(&service);
    let allowed = needled::host::AllowedHosts::from_config(&config.service);
    // Off loopback there is no plain-HTTP listener at all: TLS or nothing.
    let tls = if config.service.tls_enabled() {
        let names: Vec<String> = allowed.names().map(str::to_owned).collect();
        Some(needled::tls::server(&config, &names)?)
    } else {
        None
    };
    let state = AppState {
        service: Arc::clone(&service),
        tokens: Arc::new(tokens),
        telemetry_period: Duration::from_millis(
            1000 / u64::from(config.service.telemetry_hz.max(1)),
        ),
        version: Arc::new(needle_api::Version {
            needled: env!("CARGO_PKG_VERSION").to_string(),
            git: env!("NEEDLED_GIT_REV").to_string(),
            config_sha256: config_sha256.to_string(),
            backend: config.hardware.backend.as_str().to_string(),
            tls_sha256: tls.as_ref().map(|t| t.fingerprint.clone()),
        }),
    };
    let app = api::router(state).layer(axum::middleware::from_fn_with_state(
        allowed.clone(),
        needled::host::check,
    ));
    let listener = std::net::TcpListener::bind(config.service.bind)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("cannot bind {} (service.bind): {e}", config.service.bind))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        address = %local,
        data_dir = %data_dir.display(),
        token_file = ?token_file,
        tls_sha256 = tls.as_ref().map(|t| t.fingerprint.as_str()),
        allowed_hosts = ?allowed.names().collect::<Vec<_>>(),
        "needled listening"
    );
    if let Some(t) = &tls {
        // Operators compare this with `needlectl --tls-sha256` or the browser's view.
        println!(
            "needled TLS certificate {} sha256 {}",
            t.cert_file.display(),
            t.fingerprint
        );
    }
    // For people and the Python kit; programs use --ready-file.
    println!("needled listening on {scheme}://{local}");
    if let Some(file) = &ready_file {
        write_ready_file(
            file,
            local,
            scheme,
            tls.as_ref().map(|t| t.fingerprint.as_str()),
        )
        .map_err(|e| format!("--ready-file {}: {e}", file.display()))?;
    }
    spawn_watchdog(&service);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    match tls {
        None => {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .map_err(|e| format!("server: {e}"))?;
        }
        Some(t) => {
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                stopper.graceful_shutdown(Some(Duration::from_secs(2)));
            });
            axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(t.config),
            )
            .handle(handle)
            .serve(app.into_make_service())
            .await
            .map_err(|e| format!("server: {e}"))?;
        }
    }
    tracing::info!("shutting down: motor off");
    Ok(())
}

/// Writes the readiness file: the bound address, the pid, the scheme (`http`, `https`) and
/// the TLS certificate's SHA-256 (or null), as JSON, atomically.
fn write_ready_file(
    file: &std::path::Path,
    address: std::net::SocketAddr,
    scheme: &str,
    tls_sha256: Option<&str>,
) -> std::io::Result<()> {
    let body = serde_json::json!({
        "address": address.to_string(),
        "pid": std::process::id(),
        "scheme": scheme,
        "tls_sha256": tls_sha256,
    });
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, file)
}

/// The dead-man heartbeat. A dedicated thread (SCHED_FIFO below the control thread when
/// allowed) sends the core a heartbeat every `every`, but only while the service's monitor
/// completes its passes ([`Service::monitor_health`]): the monitor is what enforces the time
/// limit, the budgets and the ledger's view of the controller, so progress means a finished
/// monitor pass, not merely a runtime that still runs timers. A monitor that hangs (a session
/// owner stuck in an operation, a task that never yields, a hung runtime) stops the heartbeats after
/// `control.service_stall_ms`, and the core faults `HostTimeout` within `host_timeout` after
/// that; a monitor that died stops them for good; a dead process or heartbeat thread stops
/// them at once. A slow fsync on a worker shorter than the stall limit does not trip the
/// dead-man, which a heartbeat sent from the runtime itself did (hil-tests saw HostTimeout 9
/// to 37 s into runs on this machine).
fn spawn_heartbeat(service: &Arc<Service>, every: Duration, realtime: bool) -> Result<(), String> {
    let service = Arc::clone(service);
    std::thread::Builder::new()
        .name("needle-heartbeat".into())
        .spawn(move || {
            if realtime {
                control::try_realtime(40);
            }
            let mut stalled = false;
            loop {
                std::thread::sleep(every);
                // The sim can cut the host link to prove the dead-man.
                if service.sim().is_some_and(|s| s.rig.host_silent()) {
                    continue;
                }
                let health = service.monitor_health();
                if health != MonitorHealth::Ok {
                    if !stalled {
                        tracing::error!(
                            monitor = health.code(),
                            ?health,
                            "the service's monitor is not completing its passes: dead-man no longer refreshed"
                        );
                    }
                    stalled = true;
                    continue;
                }
                stalled = false;
                if let Err(control::ControlError::Stopped) =
                    service.control().send(needle_core::Command::Heartbeat)
                {
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("heartbeat thread: {e}"))
}

/// Asks the session owner for a monitor pass every 10 ms, each once the last has completed.
/// The owner is supervised where it is started ([`Service::new`]): if it dies, that is logged
/// loudly, the heartbeat stops for good and the controller is disarmed.
fn spawn_monitor(service: &Arc<Service>) {
    let service = Arc::clone(service);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            service.monitor().await;
        }
    });
}

/// Feeds systemd's watchdog only while the control thread is alive and the monitor healthy.
fn spawn_watchdog(service: &Arc<Service>) {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let service = Arc::clone(service);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(usec / 3));
        loop {
            tick.tick().await;
            let monitor = service.monitor_health();
            if !service.control().is_alive(Duration::from_millis(200)) {
                tracing::error!("control thread stalled: not feeding the watchdog");
            } else if monitor != MonitorHealth::Ok {
                tracing::error!(
                    monitor = monitor.code(),
                    "monitor not healthy: not feeding the watchdog"
                );
            } else {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
