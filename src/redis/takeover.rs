//! Whether a server took over from this one: it answers ROLE `master` and keeps this server's
//! replication ID as its second one (`master_replid2`: a replica promoted keeps its primary's).
//! Asked of a replica the policy lists (the replica watch) and of the server a majority of the
//! sentinels name (the Sentinel feed).

use super::ASK_LIMIT;
use super::probe::{Connection, Lost, Outcome};
use crate::model::snapshot::info_field as field;

/// The primary now serving: as Sentinel names it, or as a replica that took over answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryView {
    pub address: String,
    pub run_id: String,
}

/// The replica's run id when it is a primary that took over from `replid`; `Err` when the
/// connection failed (to be opened anew).
pub async fn took_over(conn: &Connection, replid: &str) -> Result<Option<String>, Lost> {
    let ask = |words: &'static [&'static str]| async move {
        match tokio::time::timeout(ASK_LIMIT, conn.call(words)).await {
            Ok(Outcome::Reply(v)) => Ok(Some(v)),
            Ok(Outcome::ErrorReply(_)) => Ok(None),
            Ok(Outcome::Lost(_)) | Err(_) => Err(Lost),
        }
    };
    let role = ask(&["ROLE"]).await?;
    if role
        .as_ref()
        .and_then(crate::redis::reply::role_in)
        .as_deref()
        != Some("master")
    {
        return Ok(None);
    }
    let replication = text(ask(&["INFO", "replication"]).await?);
    if field(&replication, "master_replid2") != Some(replid) {
        return Ok(None);
    }
    let server = text(ask(&["INFO", "server"]).await?);
    Ok(Some(
        field(&server, "run_id").unwrap_or_default().to_string(),
    ))
}

fn text(reply: Option<fred::types::Value>) -> String {
    reply.and_then(|v| v.as_string()).unwrap_or_default()
}
