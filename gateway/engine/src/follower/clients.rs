//! Local users and clients: registration (who may create a user, who may add a device to one)
//! and KeyPackage publication.

use mimi_proto::client_api::{Published, Registered};
use mimi_proto::codec::Wire;
use mimi_proto::mls::KeyPackage;
use mimi_proto::uri::{ClientUri, UserUri};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{ExtensionType, KeyPackageIn, ProtocolVersion};
use openmls_traits::crypto::OpenMlsCrypto;

use crate::store::rows::{self, ClientRow, KeyPackageRow, KpOwnerRow, UserRow};
use crate::store::{StoreError, Table, keys};
use crate::{Auth, ClientRecord, ClientReply, Engine, Refusal, Registration, RequestId, Response};

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl<C: OpenMlsCrypto> Engine<C> {
    fn user_exists(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self.follower.new_users.contains(user)
            || self.store.get(Table::Users, user.as_bytes())?.is_some())
    }

    /// `POST /register`. A new user: open registration, the admin token or a provider token for
    /// that user. A new device of an existing user: the token of one of its devices (device
    /// linking), the admin token or a provider token for that user.
    pub(crate) fn client_register(
        &mut self,
        id: RequestId,
        auth: &Auth,
        user: &str,
        device: &str,
        display_name: &str,
        token_hash: [u8; 32],
    ) {
        if !valid_name(user) || !valid_name(device) {
            return self.refuse(id, Refusal::BadName);
        }
        let exists = match self.user_exists(user) {
            Ok(e) => e,
            Err(e) => return self.store_failed(Some(id), e),
        };
        let allowed = match auth {
            Auth::Admin => true,
            Auth::Provider { user: u } => u == user,
            Auth::Client(c) => exists && c.user.name() == user,
            Auth::Anonymous => !exists && self.cfg.registration == Registration::OpenNewUsers,
        };
        if !allowed {
            let r = if let Auth::Provider { user: u } = auth {
                Refusal::NotYours {
                    caller: format!("a provider token for {u}"),
                    user: user.to_owned(),
                    action: "register a device",
                }
            } else if exists {
                Refusal::DeviceLinking {
                    user: user.to_owned(),
                }
            } else if matches!(auth, Auth::Client(_)) {
                Refusal::Invalid(format!(
                    "a client token links devices of its own user only; {user} is another user"
                ))
            } else {
                Refusal::RegistrationClosed
            };
            return self.refuse(id, r);
        }
        let client_id = format!("{user}/{device}");
        let taken = self.follower.new_clients.contains(&client_id)
            || match self.store.get(Table::Clients, client_id.as_bytes()) {
                Ok(c) => c.is_some(),
                Err(e) => return self.store_failed(Some(id), e),
            };
        if taken {
            return self.refuse(id, Refusal::Exists(format!("client {client_id}")));
        }
        let (Ok(user_uri), Ok(client_uri)) = (
            UserUri::new(&self.cfg.domain, user),
            ClientUri::new(&self.cfg.domain, user, device),
        ) else {
            return self.refuse(id, Refusal::BadName);
        };
        self.writes.put(
            Table::Clients,
            client_id.as_bytes().to_vec(),
            &ClientRow {
                user: user.to_owned(),
                device: device.to_owned(),
                token_hash,
                created_ms: self.now_ms,
            },
        );
        self.writes.put_raw(
            Table::Tokens,
            token_hash.to_vec(),
            client_id.as_bytes().to_vec(),
        );
        self.writes.put_raw(
            Table::UserClients,
            keys::join(&[user.as_bytes(), client_id.as_bytes()]),
            Vec::new(),
        );
        if !exists {
            self.writes.put(
                Table::Users,
                user.as_bytes().to_vec(),
                &UserRow {
                    display_name: if display_name.is_empty() {
                        user.to_owned()
                    } else {
                        display_name.to_owned()
                    },
                    discoverable: true,
                    created_ms: self.now_ms,
                },
            );
            self.follower.new_users.insert(user.to_owned());
        }
        self.follower.new_clients.insert(client_id.clone());
        self.respond(
            id,
            Response::client(
                201,
                ClientReply::Registered(Registered {
                    client_id,
                    user: user_uri,
                    client_uri,
                    token: None,
                }),
            ),
        );
    }

    /// Checks one published KeyPackage; returns its reference and row.
    fn check_key_package(
        &self,
        client: &ClientRecord,
        i: usize,
        raw: &[u8],
        last_resort: bool,
    ) -> Result<(Vec<u8>, KeyPackageRow), Refusal> {
        let invalid = |detail: String| Refusal::InvalidKeyPackage { index: i, detail };
        let kp = KeyPackage::from_bytes(raw).map_err(|e| invalid(e.to_string()))?;
        let verified = KeyPackageIn::tls_deserialize_exact(raw)
            .map_err(|e| e.to_string())
            .and_then(|k| {
                k.validate(&self.crypto, ProtocolVersion::Mls10)
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| invalid(format!("does not validate: {e}")))?;
        if kp.leaf_node.credential.basic_identity() != Some(client.uri.as_str().as_bytes()) {
            return Err(Refusal::NotYours {
                caller: format!("client {}", client.uri),
                user: String::from_utf8_lossy(
                    kp.leaf_node.credential.basic_identity().unwrap_or_default(),
                )
                .into_owned(),
                action: "publish a KeyPackage",
            });
        }
        let has_last_resort = verified
            .extensions()
            .iter()
            .any(|e| e.extension_type() == ExtensionType::LastResort);
        if last_resort != has_last_resort {
            return Err(invalid(if last_resort {
                "a last-resort KeyPackage must carry the last_resort extension".into()
            } else {
                "a KeyPackage with the last_resort extension goes in last_resort".into()
            }));
        }
        let not_after = match &kp.leaf_node.leaf_node_source {
            mimi_proto::mls::LeafNodeSource::KeyPackage(l) => l.not_after,
            _ => 0,
        };
        if not_after <= self.now_ms / 1000 {
            return Err(invalid("has expired".into()));
        }
        let r = kp
            .reference()
            .ok_or_else(|| invalid(format!("uses unsupported cipher suite {}", kp.cipher_suite)))?;
        Ok((
            r.0,
            KeyPackageRow {
                key_package: raw.to_vec(),
                cipher_suite: kp.cipher_suite,
                not_after,
                last_resort,
            },
        ))
    }

    /// `POST /key-packages`.
    pub(crate) fn client_publish(
        &mut self,
        id: RequestId,
        client: &ClientRecord,
        kps: Vec<Vec<u8>>,
        last_resort: Option<Vec<u8>>,
    ) {
        let ck = client.id.as_bytes();
        let max = self.cfg.limits.max_key_packages_per_client;
        let existing =
            match self
                .store
                .scan(Table::KeyPackages, &keys::prefix(&[ck]), None, max + 2)
            {
                Ok(e) => e,
                Err(e) => return self.store_failed(Some(id), e),
            };
        let mut old_last_resort = None;
        let mut have = 0;
        for (k, v) in &existing {
            match rows::decode::<KeyPackageRow>(Table::KeyPackages, v) {
                Ok(r) if r.last_resort => old_last_resort = Some(k.clone()),
                Ok(_) => have += 1,
                Err(e) => return self.store_failed(Some(id), e),
            }
        }
        if have + kps.len() > max {
            return self.refuse(
                id,
                Refusal::TooMany {
                    what: "unused KeyPackages per client",
                    max: max as u64,
                },
            );
        }
        let mut checked = Vec::with_capacity(kps.len() + 1);
        for (i, raw) in kps.iter().enumerate() {
            match self.check_key_package(client, i, raw, false) {
                Ok(c) => checked.push(c),
                Err(r) => return self.refuse(id, r),
            }
        }
        if let Some(raw) = &last_resort {
            match self.check_key_package(client, kps.len(), raw, true) {
                Ok(c) => checked.push(c),
                Err(r) => return self.refuse(id, r),
            }
            if let Some(k) = old_last_resort {
                self.writes.delete(Table::KeyPackages, k);
            }
        }
        let n = checked.len();
        let available = have + kps.len();
        for (r, row) in checked {
            self.writes.put(
                Table::KpOwners,
                r.clone(),
                &KpOwnerRow {
                    client: client.id.clone(),
                    not_after: row.not_after,
                },
            );
            self.writes
                .put(Table::KeyPackages, keys::join(&[ck, &r]), &row);
        }
        self.respond(
            id,
            Response::client(
                200,
                ClientReply::Published(Published {
                    published: n,
                    available,
                }),
            ),
        );
    }
}
