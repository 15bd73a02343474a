//! `/proxyDownload`: the hub fetches an encrypted asset for a follower (so the asset host does
//! not learn who downloads). Only `https://<host>/assets/<id>` URLs whose host is an asset
//! host of a configured peer, or an upload domain in the asset policy of a room hosted here;
//! no query, no fragment, no other path: the hub is not an open proxy. The shell fetches with
//! a size cap over the link to that peer.

use mimi_proto::codec::Wire;
use mimi_proto::components::{AssetPolicy, ids as cid};
use mimi_proto::uri::Domain;
use openmls_traits::crypto::OpenMlsCrypto;

use crate::{Engine, Output, Refusal, RequestId};

/// `(host, port, id)` of an acceptable asset URL (`https://<host>[:port]/assets/<id>`).
pub fn parse_asset_url(url: &str) -> Option<(&str, Option<u16>, &str)> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = rest.split_once('/')?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (authority, None),
    };
    let id = path.strip_prefix("assets/")?;
    let ok_id = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok_id && Domain::parse(host).is_ok()).then_some((host, port, id))
}

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn proxy_download(&mut self, id: RequestId, peer: &Domain, url: &str) {
        let Some((host, _, _)) = parse_asset_url(url) else {
            return self.refuse(
                id,
                Refusal::Invalid(
                    "proxyDownload takes https://<asset host>/assets/<id> (no query or fragment)"
                        .into(),
                ),
            );
        };
        // Which peer's asset host it is: configured hosts first, then hosted rooms' policies.
        let owner = self
            .cfg
            .asset_domains
            .iter()
            .find(|(_, hosts)| hosts.contains(host))
            .map(|(p, _)| p.clone())
            .or_else(|| {
                self.hub.rooms.values().find_map(|r| {
                    let ap = AssetPolicy::from_bytes(&r.dict_get(cid::ASSET_POLICY)?).ok()?;
                    ap.upload_domains
                        .iter()
                        .any(|p| {
                            p.asset_upload_destinations
                                .iter()
                                .any(|d| d.0 == host.as_bytes())
                        })
                        .then(|| host.to_owned())
                })
            })
            .and_then(|p| Domain::parse(&p).ok());
        let Some(owner) = owner else {
            return self.refuse(
                id,
                Refusal::OpenProxy {
                    host: host.to_owned(),
                    peer: peer.to_string(),
                },
            );
        };
        self.outputs.push_back(Output::Fetch {
            id,
            peer: owner,
            url: url.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::parse_asset_url;

    #[test]
    fn only_asset_urls() {
        assert_eq!(
            parse_asset_url("https://a.example:4433/assets/ab12"),
            Some(("a.example", Some(4433), "ab12"))
        );
        for bad in [
            "http://a.example/assets/ab",
            "https://a.example/v1/keyMaterial/x",
            "https://a.example/assets/ab?x=1",
            "https://a.example/assets/../v1/notify",
            "https://a.example/assets/",
            "https://A.example/assets/ab",
            "https://a.example:99999/assets/ab",
        ] {
            assert_eq!(parse_asset_url(bad), None, "{bad}");
        }
    }
}
