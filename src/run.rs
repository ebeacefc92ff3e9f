//! The gateway's run loop: the only async code of the core. It owns the store, the component
//! link and the SIP transport, and shutdown on Ctrl-C or SIGTERM.

use anyhow::{Context, Result};
use sipjab_db::{DbUrl, Store};
use tracing::info;

use crate::config::Config;

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(config: Config, db: DbUrl) -> Result<()> {
    let store = Store::open(&db)
        .await
        .with_context(|| format!("opening the account store {}", db.redacted()))?;
    info!(
        domain = %config.xmpp.domain,
        store = %db.redacted(),
        "sipjab started"
    );
    shutdown_signal().await?;
    info!("shutting down");
    drop(store);
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
