//! The `sipjab` command line: run the gateway, check its configuration, map addresses and
//! manage the account store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use jid::Jid;
use sipjab::address::XmppTarget;
use sipjab::config::{Config, ConfigError};
use sipjab_db::{DbUrl, Network, NetworkAccount, SipAor, Store};

/// mimalloc rather than glibc's malloc: every message allocates and frees a few hundred
/// small blocks (parsed headers, stanza trees, serialised bytes), and glibc's free lists and
/// consolidation were a tenth of the gateway's CPU per message.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SIP/SIMPLE <-> XMPP gateway: one XEP-0114 component, the SER jabber module's address rules.
#[derive(Debug, Parser)]
#[command(name = "sipjab", version, about, long_about = None)]
struct Cli {
    /// Config file [default: sipjab.toml in the working directory, if present]
    #[arg(long, global = true, env = "SIPJAB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `--db URL`, for every subcommand that opens the store.
#[derive(Debug, Args)]
struct DbArg {
    /// Account store URL, overriding [db] url: sqlite://var/sipjab.db, mysql://user:pass@host:port/db
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until Ctrl-C or SIGTERM
    Run(DbArg),
    /// Check the configuration and print it with secrets redacted
    CheckConfig,
    /// Print the translation of one address: a SIP URI to a JID, or a JID to a SIP URI
    Map {
        /// sip:alpha*jabber.org@jabber.x.com, or alpha@jabber.org, or room@conference.server/nick
        address: String,
    },
    /// Account store schema
    #[command(subcommand)]
    Db(DbCommand),
    /// SIP users and their Jabber IDs
    #[command(subcommand)]
    Account(AccountCommand),
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Create the schema (SER tables and sipjab's own); running it again changes nothing
    Init(DbArg),
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Add a SIP user with its Jabber ID (the localpart of <jab_id>@<component domain>)
    Add {
        /// The SIP user's address of record, sip:alice@example.com
        sip_uri: String,
        /// The Jabber ID's localpart
        jab_id: String,
        /// Password column kept for the SER schema (the component does not log users in)
        #[arg(long)]
        password: Option<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// List all accounts
    List(DbArg),
    /// Show one account and its IM network rows
    Show {
        /// The SIP user's address of record
        sip_uri: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Remove an account and its IM network rows
    Remove {
        /// The SIP user's address of record
        sip_uri: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Add or replace the account's row for one IM network (aim, icq, msn, yahoo)
    Network {
        /// The SIP user's address of record
        sip_uri: String,
        /// aim, icq, msn or yahoo
        network: Network,
        /// The user's ID in that network
        id: String,
        /// The password for that network
        #[arg(long)]
        password: Option<String>,
        /// The nickname for that network
        #[arg(long)]
        nick: Option<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Remove the account's row for one IM network
    NetworkRemove {
        /// The SIP user's address of record
        sip_uri: String,
        /// aim, icq, msn or yahoo
        network: Network,
        #[command(flatten)]
        db: DbArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: the gateway is one loop, and waking it across threads for every
    // datagram and stanza costs more CPU than it saves. Blocking store calls still run on
    // tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ConfigError>() {
                Some(config) => {
                    eprintln!("error: invalid configuration");
                    for p in &config.problems {
                        eprintln!("  {}: {}", p.key, p.reason);
                    }
                }
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    let file = cli.config.as_deref();
    match cli.command {
        Command::Run(db) => {
            let config = Config::load(file)?;
            let url = db_url(&db, Some(&config))?;
            sipjab::run::run(config, url).await
        }
        Command::CheckConfig => {
            let config = Config::load(file)?;
            print!("{}", config.effective_toml());
            Ok(())
        }
        Command::Map { address } => {
            let config = Config::load(file)?;
            println!("{}", map(&config, &address)?);
            Ok(())
        }
        Command::Db(DbCommand::Init(db)) => {
            let url = store_url(file, &db)?;
            Store::init(&url).await?;
            println!("schema ready in {}", url.redacted());
            Ok(())
        }
        Command::Account(cmd) => account(file, cmd).await,
    }
}

/// The store URL from `--db`, else from the configuration.
fn db_url(arg: &DbArg, config: Option<&Config>) -> Result<DbUrl> {
    match (&arg.db, config) {
        (Some(url), _) => DbUrl::parse(url).context("--db"),
        (None, Some(config)) => Ok(config.db.url.clone()),
        (None, None) => bail!("no store URL"),
    }
}

/// Store commands need only `[db] url`: with `--db` no config file is read at all.
fn store_url(file: Option<&std::path::Path>, arg: &DbArg) -> Result<DbUrl> {
    match &arg.db {
        Some(_) => db_url(arg, None),
        None => Ok(Config::load_db_url(file)?),
    }
}

fn map(config: &Config, address: &str) -> Result<String> {
    let rules = &config.gateway.rules;
    let lower = address.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        if lower.starts_with("sips:") {
            // RFC 7247 §8: a SIPS address must not be carried into XMPP.
            bail!("{address}: sips: addresses are not translated to XMPP (RFC 7247 §8)");
        }
        let aor = SipAor::parse(address).with_context(|| address.to_owned())?;
        let target = rules
            .sip_to_xmpp(aor.user(), aor.host())
            .with_context(|| address.to_owned())?;
        return Ok(match target {
            XmppTarget::Contact(jid) => jid.to_string(),
            conference => conference.to_string(),
        });
    }
    let jid = Jid::new(address).with_context(|| format!("{address} is not a SIP URI or a JID"))?;
    let sip = match jid.try_into_full() {
        Ok(full) => rules.occupant_to_sip(&full),
        Err(bare) => rules.contact_to_sip(&bare),
    };
    Ok(sip.with_context(|| address.to_owned())?.to_string())
}

async fn account(file: Option<&std::path::Path>, cmd: AccountCommand) -> Result<()> {
    let aor = |s: &str| SipAor::parse(s).with_context(|| s.to_owned());
    match cmd {
        AccountCommand::Add {
            sip_uri,
            jab_id,
            password,
            db,
        } => {
            let store = Store::open(&store_url(file, &db)?).await?;
            let account = store
                .add_account(&aor(&sip_uri)?, &jab_id, password.as_deref())
                .await?;
            println!(
                "added {} as {} (juid {})",
                account.sip_id, account.jab_id, account.juid
            );
        }
        AccountCommand::List(db) => {
            let store = Store::open(&store_url(file, &db)?).await?;
            let accounts = store.accounts().await?;
            println!("{:>6}  {:<40}  {:<24}  type", "juid", "sip_id", "jab_id");
            for a in &accounts {
                println!(
                    "{:>6}  {:<40}  {:<24}  {}",
                    a.juid, a.sip_id, a.jab_id, a.kind
                );
            }
            println!("{} account(s)", accounts.len());
        }
        AccountCommand::Show { sip_uri, db } => {
            let store = Store::open(&store_url(file, &db)?).await?;
            let Some(a) = store.account_by_sip(&aor(&sip_uri)?).await? else {
                bail!("no account for {sip_uri}");
            };
            println!("juid:     {}", a.juid);
            println!("sip_id:   {}", a.sip_id);
            println!("jab_id:   {}", a.jab_id);
            println!("password: {}", set_or_not(a.jab_passwd.as_deref()));
            println!("type:     {}", a.kind);
            for n in store.networks(a.juid).await? {
                println!(
                    "{}:      id {}, nick {}, password {}",
                    n.network,
                    n.id,
                    n.nick.as_deref().unwrap_or("-"),
                    set_or_not(n.passwd.as_deref())
                );
            }
        }
        AccountCommand::Remove { sip_uri, db } => {
            let store = Store::open(&store_url(file, &db)?).await?;
            if !store.remove_account(&aor(&sip_uri)?).await? {
                bail!("no account for {sip_uri}");
            }
            println!("removed {sip_uri}");
        }
        AccountCommand::Network {
            sip_uri,
            network,
            id,
            password,
            nick,
            db,
        } => {
            let store = Store::open(&store_url(file, &db)?).await?;
            let row = NetworkAccount::new(network, id, password.as_deref(), nick.as_deref());
            store.set_network(&aor(&sip_uri)?, &row).await?;
            println!("{network} account set for {sip_uri}");
        }
        AccountCommand::NetworkRemove {
            sip_uri,
            network,
            db,
        } => {
            let store = Store::open(&store_url(file, &db)?).await?;
            if !store.remove_network(&aor(&sip_uri)?, network).await? {
                bail!("{sip_uri} has no {network} account");
            }
            println!("{network} account removed for {sip_uri}");
        }
    }
    Ok(())
}

fn set_or_not(secret: Option<&str>) -> &'static str {
    match secret {
        Some(s) if !s.is_empty() => "set",
        _ => "not set",
    }
}
