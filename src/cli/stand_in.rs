//! `backstop stand-in`: the local Discord stand-in on its own, printing what it receives.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use backstop_stand_in::{ChannelSpec, GuildSpec, MemberSpec, RoleSpec, Seen, StandIn};

#[derive(Debug, Args)]
pub struct StandInArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

pub fn run(args: StandInArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let guild = GuildSpec {
            id: 1000,
            name: "Stand-in guild".into(),
            owner_id: 2000,
            roles: vec![RoleSpec { id: 1001, name: "Agents".into(), permissions: 0 }],
            channels: vec![
                ChannelSpec { id: 1100, kind: 0, name: "support".into(), parent_id: None },
                ChannelSpec { id: 1101, kind: 0, name: "coaching".into(), parent_id: None },
            ],
            members: vec![MemberSpec { id: 2000, name: "agent".into(), roles: vec![1001], bot: false }],
        };
        let stand_in = StandIn::start(args.port, vec![guild]).await.context("binding 127.0.0.1")?;
        stand_in.watch(|seen| match seen {
            Seen::Request(r) => println!("{} {} → {} {}", r.method, r.path, r.status, r.body),
            Seen::Dispatched { kind, .. } => println!("dispatch {kind}"),
        });
        println!("Discord stand-in listening on {} (guild 1000: #support 1100, #coaching 1101, agent role 1001). Ctrl-C stops it.", stand_in.url());
        super::run::shutdown_signal().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
