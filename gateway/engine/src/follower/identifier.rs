//! Identifier queries (draft-ietf-mimi-protocol §5.9) about this provider's users. Exact
//! handles and nicks are looked up directly; substring search over display names
//! (`partialName`, `wholeProfile`) is off unless the operator enables it, so that a peer cannot
//! list the provider's users with 36 one-letter queries, and even then answers at most
//! [`MAX_FOUND`] users and scans at most [`MAX_SCANNED`].

use bytes::Bytes;
use mimi_proto::codec::{Uri, Wire};
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    IdentifierQueryCode, IdentifierRequest, IdentifierResponse, QueryElement, SearchIdentifierType,
};
use mimi_proto::uri::{Domain, UserUri};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::store::rows::{self, UserRow};
use crate::store::{StoreError, Table};
use crate::{Engine, Pending, Refusal, RequestId, Response};

/// Most users one substring query returns.
pub(crate) const MAX_FOUND: usize = 20;
/// Most users one substring query looks at.
pub(crate) const MAX_SCANNED: usize = 10_000;

fn reply(code: IdentifierQueryCode, uri: Vec<Uri>) -> Response {
    Response::mimi(
        IdentifierResponse {
            response_code: code,
            uri,
            found_profiles: vec![],
            id_response_extensions: Default::default(),
        }
        .to_bytes(),
    )
}

impl<C: OpenMlsCrypto> Engine<C> {
    fn user_row(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        self.store
            .get(Table::Users, name.as_bytes())?
            .map(|b| rows::decode(Table::Users, &b))
            .transpose()
    }

    fn matches(&self, name: &str, u: &UserRow, q: &QueryElement) -> bool {
        let v = q.search_value.0.as_str();
        match q.search_type {
            SearchIdentifierType::Handle => {
                UserUri::new(&self.cfg.domain, name).is_ok_and(|h| h.as_str() == v)
            }
            SearchIdentifierType::Nick => v == name,
            SearchIdentifierType::PartialName => {
                !v.is_empty() && u.display_name.to_lowercase().contains(&v.to_lowercase())
            }
            SearchIdentifierType::WholeProfile => {
                !v.is_empty() && (u.display_name.contains(v) || name.contains(v))
            }
            _ => false,
        }
    }

    /// The candidates the first element names: exactly one user for handles and nicks.
    fn candidates(&self, q: &QueryElement) -> Result<Option<Vec<(String, UserRow)>>, StoreError> {
        let v = q.search_value.0.as_str();
        let exact = match q.search_type {
            SearchIdentifierType::Handle => v
                .parse::<UserUri>()
                .ok()
                .filter(|u| u.is_of(&self.cfg.domain))
                .map(|u| u.name().to_owned()),
            SearchIdentifierType::Nick => Some(v.to_owned()),
            SearchIdentifierType::PartialName | SearchIdentifierType::WholeProfile => {
                if !self.cfg.partial_name_search {
                    return Ok(None);
                }
                let rows = self.store.scan(Table::Users, b"", None, MAX_SCANNED)?;
                let mut out = Vec::new();
                for (k, b) in rows {
                    let name = String::from_utf8_lossy(&k).into_owned();
                    let u: UserRow = rows::decode(Table::Users, &b)?;
                    if self.matches(&name, &u, q) {
                        out.push((name, u));
                    }
                }
                return Ok(Some(out));
            }
            _ => return Ok(None),
        };
        let Some(name) = exact else {
            return Ok(Some(Vec::new()));
        };
        Ok(Some(
            self.user_row(&name)?
                .map(|u| vec![(name, u)])
                .unwrap_or_default(),
        ))
    }

    pub(crate) fn follower_identifier_query(&mut self, id: RequestId, target: &str, body: &Bytes) {
        if target != self.cfg.domain.as_str() {
            return self.refuse(
                id,
                Refusal::NotFound(format!(
                    "this gateway answers identifier queries for {} only",
                    self.cfg.domain
                )),
            );
        }
        let req = match IdentifierRequest::from_bytes(body) {
            Ok(r) => r,
            Err(e) => return self.refuse(id, Refusal::malformed("IdentifierRequest", e)),
        };
        let Some(first) = req.query_elements.first() else {
            return self.respond(id, reply(IdentifierQueryCode::Ambiguous, vec![]));
        };
        let found = match self.candidates(first) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return self.respond(id, reply(IdentifierQueryCode::UnsupportedField, vec![]));
            }
            Err(e) => return self.store_failed(Some(id), e),
        };
        let mut uris = Vec::new();
        for (name, u) in found {
            if !u.discoverable
                || !req
                    .query_elements
                    .iter()
                    .all(|q| self.matches(&name, &u, q))
            {
                continue;
            }
            if let Ok(uri) = UserUri::new(&self.cfg.domain, &name) {
                uris.push(Uri::from(&uri));
            }
            if uris.len() == MAX_FOUND {
                break;
            }
        }
        let code = if uris.is_empty() {
            IdentifierQueryCode::NotFound
        } else {
            IdentifierQueryCode::Success
        };
        self.respond(id, reply(code, uris));
    }

    pub(crate) fn client_identifier_query(&mut self, id: RequestId, domain: &str, body: Bytes) {
        let domain = match Domain::parse(domain) {
            Ok(d) => d,
            Err(e) => return self.refuse(id, Refusal::uri("domain", e)),
        };
        if domain == self.cfg.domain {
            return self.follower_identifier_query(id, domain.as_str(), &body);
        }
        let why = Pending::Relay {
            reply_to: id,
            endpoint: Endpoint::IdentifierQuery,
            room: None,
            target_domain: domain.clone(),
            member: None,
        };
        self.send(
            &domain,
            Endpoint::IdentifierQuery,
            domain.as_str(),
            body,
            why,
        );
    }
}
