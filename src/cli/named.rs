//! `rackbox zone|pool|tag ...`: the named groupings of machines, which all speak the same verbs.

use clap::Subcommand;
use reqwest::Method;

use super::{CliError, Client, Output};
use crate::model::api::NamedRequest;

#[derive(Subcommand, Debug)]
pub enum NamedCmd {
    List,
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    Delete {
        name: String,
    },
}

pub(super) async fn named(
    client: &Client,
    out: &Output,
    what: &str,
    cmd: NamedCmd,
) -> Result<(), CliError> {
    match cmd {
        NamedCmd::List => {
            let v = client.get(&format!("/api/v1/{what}")).await?;
            out.table(&v, &[("NAME", "name"), ("DESCRIPTION", "description")]);
        }
        NamedCmd::Add { name, description } => {
            let request = NamedRequest { name, description };
            let v = client
                .send(Method::POST, &format!("/api/v1/{what}"), &request)
                .await?;
            out.record(&v, &[("name", "name"), ("description", "description")]);
        }
        NamedCmd::Delete { name } => {
            client.delete(&format!("/api/v1/{what}/{name}")).await?;
            out.done(&format!("deleted {name}"));
        }
    }
    Ok(())
}
