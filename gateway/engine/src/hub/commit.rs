//! `/update` with a commit: openmls validates it; the hub attributes it to a member (or an
//! external joiner) the caller speaks for, requires every proposal it accepted this epoch,
//! checks every added KeyPackage against the provider it was claimed from, applies the room
//! policy to the participant-list and membership change, then merges, keeps the new GroupInfo
//! and fans out the commit, then the Welcome to the providers of the new members.

use std::collections::BTreeSet;
use std::sync::Arc;

use mimi_proto::client_api::DeliveryKind;
use mimi_proto::codec::{Bytes, Wire};
use mimi_proto::components::{AppDataOp, RoleTransition};
use mimi_proto::directory::Endpoint;
use mimi_proto::messages::{
    FanoutExtra, FanoutMessage, GroupInfoOption, RatchetTreeOption, UpdateOutcome,
};
use mimi_proto::mls::{GroupInfo, MlsMessage, MlsMessageBody, RatchetTree, Welcome};
use mimi_proto::uri::{ClientUri, Domain, RoomUri, UserUri};
use openmls::component::ComponentData;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    AppDataUpdateOperation, LeafNodeIndex, ProcessedMessageContent, PublicGroup,
    PublicProcessMessageError, Sender, StagedCommit, ValidationError,
};
use openmls_traits::crypto::OpenMlsCrypto;

use super::{Caller, HubRoom, client_of, update_response, user_of};
use crate::policy::{self, Change};
use crate::store::rows::{self, KpRouteRow};
use crate::store::{Table, keys};
use crate::{Engine, Refusal, RequestId};

/// What a commit does, once openmls staged it.
struct Staged {
    staged: StagedCommit,
    actor: UserUri,
    /// The committer's client (its leaf signs the GroupInfo).
    client: ClientUri,
    /// The committer's leaf, for a member's commit (an external joiner's is known after the
    /// merge).
    sender_leaf: Option<u32>,
    external: bool,
    transitions: Vec<RoleTransition>,
    touched: BTreeSet<u16>,
}

/// Why a commit is refused.
enum Rejected {
    /// notAllowed, with this description.
    Policy(String),
    /// A protocol outcome other than notAllowed.
    Outcome(UpdateOutcome, String),
    /// Not even the protocol's business: the caller may not act for the committer.
    Refusal(Refusal),
}

/// What a commit's AppDataUpdate proposals do: the dictionary changes for openmls, the
/// participant-list transitions and the other components touched.
type Resolved = (
    Option<openmls::prelude::AppDataUpdates>,
    Vec<RoleTransition>,
    BTreeSet<u16>,
);

/// Applies a commit's AppDataUpdate proposals to the group's dictionary (the rule itself is
/// `mimi_proto::components::resolve_app_data`).
fn resolve_app_data(
    group: &PublicGroup,
    proposals: &[(u16, AppDataUpdateOperation)],
) -> Result<Resolved, String> {
    let ops: Vec<(u16, AppDataOp)> = proposals
        .iter()
        .map(|(id, op)| {
            (
                *id,
                match op {
                    AppDataUpdateOperation::Update(d) => AppDataOp::Update(d.as_slice().to_vec()),
                    AppDataUpdateOperation::Remove => AppDataOp::Remove,
                },
            )
        })
        .collect();
    let mut updater = group.app_data_dictionary_updater();
    let resolved = mimi_proto::components::resolve_app_data(
        |id| updater.old_value(id).map(<[u8]>::to_vec),
        &ops,
    )?;
    for (id, v) in resolved.changes {
        match v {
            Some(d) => updater.set(ComponentData::from_parts(id, d.into())),
            None => updater.remove(&id),
        }
    }
    Ok((updater.changes(), resolved.transitions, resolved.touched))
}

fn export_tree(g: &PublicGroup) -> RatchetTree {
    let bytes = g
        .export_ratchet_tree()
        .tls_serialize_detached()
        .unwrap_or_default();
    RatchetTree::from_openmls_bytes(&bytes).unwrap_or_else(|_| RatchetTree(Bytes::default()))
}

impl<C: OpenMlsCrypto> Engine<C> {
    pub(crate) fn hub_commit(
        &mut self,
        id: RequestId,
        caller: &Caller,
        room: &RoomUri,
        commit: &MlsMessage,
        welcome: Option<Welcome>,
        group_info_option: GroupInfoOption,
        ratchet_tree_option: RatchetTreeOption,
    ) {
        let checked = self
            .stage_commit(caller, room, commit)
            .and_then(|s| self.authorize_commit(room, s));
        let (staged, followers) = match checked {
            Ok(x) => x,
            Err(Rejected::Policy(why)) => return self.refuse_hub(id, Endpoint::Update, &why),
            Err(Rejected::Outcome(o, why)) => {
                self.stats.hub_refused += 1;
                return self.respond(id, update_response(o, &why));
            }
            Err(Rejected::Refusal(r)) => {
                self.stats.hub_refused += 1;
                return self.refuse(id, r);
            }
        };
        let member = match caller {
            Caller::Local(c) => Some(c.id.clone()),
            Caller::Peer(_) => None,
        };
        self.accept_commit(
            id,
            room,
            commit,
            staged,
            followers,
            welcome,
            &group_info_option,
            ratchet_tree_option,
            member.as_deref(),
        );
    }

    /// openmls validation and attribution.
    fn stage_commit(
        &self,
        caller: &Caller,
        room: &RoomUri,
        commit: &MlsMessage,
    ) -> Result<Staged, Rejected> {
        let r = self
            .hub
            .rooms
            .get_ref(room)
            .ok_or_else(|| Rejected::Policy("no such room".into()))?;
        let pm = commit
            .to_openmls()
            .ok()
            .and_then(|x| x.try_into_protocol_message().ok())
            .ok_or(())
            .map_err(|_| Rejected::Policy("the commit is not a protocol message".into()))?;
        let processed = match r.group.process_message(&self.crypto, pm) {
            Ok(p) => p,
            Err(PublicProcessMessageError::ValidationError(ValidationError::WrongEpoch)) => {
                return Err(Rejected::Outcome(
                    UpdateOutcome::WrongEpoch {
                        current_epoch: r.epoch(),
                    },
                    "stale epoch".into(),
                ));
            }
            Err(e) => return Err(Rejected::Policy(format!("the commit is invalid: {e}"))),
        };
        let external = matches!(processed.sender(), Sender::NewMemberCommit);
        let sender_leaf = match processed.sender() {
            Sender::Member(leaf) => Some(leaf.u32()),
            _ => None,
        };
        let client = client_of(processed.credential()).ok_or_else(|| {
            Rejected::Policy("the committer's credential is not a MIMI client URI".into())
        })?;
        let actor = client.user();
        if !caller.speaks_for(&actor) {
            return Err(Rejected::Refusal(
                caller.not_yours(actor.as_str(), "submit a commit"),
            ));
        }
        if let Caller::Local(c) = caller
            && client != c.uri
        {
            return Err(Rejected::Refusal(Refusal::CredentialMismatch(format!(
                "the commit is signed by {client}, not by the calling client {}",
                c.uri
            ))));
        }
        let (staged, transitions, touched) = match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(sc) => (*sc, Vec::new(), BTreeSet::new()),
            ProcessedMessageContent::UnresolvedAppDataCommit(u) => {
                let ops: Vec<(u16, AppDataUpdateOperation)> = u
                    .app_data_update_proposals()
                    .map(|p| (p.component_id(), p.operation().clone()))
                    .collect();
                let (changes, transitions, touched) =
                    resolve_app_data(&r.group, &ops).map_err(Rejected::Policy)?;
                let sc = r
                    .group
                    .stage_app_data_commit(&self.crypto, *u, changes)
                    .map_err(|e| Rejected::Policy(format!("the commit does not stage: {e}")))?;
                (sc, transitions, touched)
            }
            _ => return Err(Rejected::Policy("not a commit".into())),
        };
        if !external {
            // Every proposal the hub accepted this epoch must be in the commit (external commits
            // cannot carry proposals by reference; the pending ones lapse with the epoch).
            let committed: BTreeSet<Vec<u8>> = staged
                .queued_proposals()
                .map(|q| q.proposal_reference_ref().as_slice().to_vec())
                .collect();
            let pending = r.group.queued_proposals(&r.storage).unwrap_or_default();
            if let Some((missing, _)) = pending
                .iter()
                .find(|(pr, _)| !committed.contains(pr.as_slice()))
            {
                return Err(Rejected::Outcome(
                    UpdateOutcome::InvalidProposal {
                        invalid_proposals: vec![Bytes(missing.as_slice().to_vec())],
                    },
                    "the commit must include every pending proposal".into(),
                ));
            }
        }
        Ok(Staged {
            staged,
            actor,
            client,
            sender_leaf,
            external,
            transitions,
            touched,
        })
    }

    /// The KeyPackage checks and the room policy; returns who to fan out to.
    fn authorize_commit(
        &self,
        room: &RoomUri,
        s: Staged,
    ) -> Result<(Staged, BTreeSet<Domain>), Rejected> {
        let r = self
            .hub
            .rooms
            .get_ref(room)
            .ok_or_else(|| Rejected::Policy("no such room".into()))?;
        let members_before = r.member_users();
        let removed: BTreeSet<u32> = s
            .staged
            .remove_proposals()
            .map(|q| q.remove_proposal().removed().u32())
            .collect();
        let name = |u: &Option<UserUri>| u.as_ref().map(ToString::to_string).unwrap_or_default();
        let removed_clients_of: Vec<String> = members_before
            .iter()
            .filter(|(i, _)| removed.contains(&i.u32()))
            .map(|(_, u)| name(u))
            .collect();
        let mut added_clients_of = Vec::new();
        for a in s.staged.add_proposals() {
            let kp = a.add_proposal().key_package();
            let user = user_of(kp.leaf_node().credential()).ok_or_else(|| {
                Rejected::Policy("an added client's credential is not a MIMI client URI".into())
            })?;
            self.check_kp_route(room, kp, &user)?;
            added_clients_of.push(user.to_string());
        }
        let mut members_after: Vec<String> = members_before
            .iter()
            .filter(|(i, _)| !removed.contains(&i.u32()))
            .map(|(_, u)| name(u))
            .collect();
        members_after.extend(added_clients_of.iter().cloned());
        if s.external {
            members_after.push(s.actor.to_string());
        }
        let before = r
            .effective_policy()
            .map_err(|e| Rejected::Policy(e.to_string()))?;
        let committed_before = r.policy().unwrap_or_else(|_| before.clone());
        let same_components = s.staged.group_context().extensions().app_data_dictionary()
            == r.group.group_context().extensions().app_data_dictionary();
        let after = if same_components {
            // No component changes: the policy after is the one in effect now (with the
            // pending participant-list proposals, which the commit includes by reference).
            Arc::clone(&before)
        } else {
            let mut a = policy::read_policy(|cid| {
                s.staged
                    .group_context()
                    .extensions()
                    .app_data_dictionary()
                    .and_then(|d| d.dictionary().get(&cid))
                    .map(<[u8]>::to_vec)
            })
            .unwrap_or_else(|_| (*before).clone());
            // Participant-list changes accepted as proposals are in effect even when the
            // commit includes them by reference only.
            if a.participants == committed_before.participants
                && before.participants != committed_before.participants
            {
                a.participants = before.participants.clone();
            }
            Arc::new(a)
        };
        let change = Change {
            actor: s.actor.to_string(),
            external: s.external,
            transitions: s.transitions.clone(),
            policy_components: s.touched.clone(),
            added_clients_of,
            removed_clients_of,
            members_after,
            members_before: members_before.iter().map(|(_, u)| name(u)).collect(),
        };
        policy::authorize(&committed_before, &after, &change)
            .map_err(|e| Rejected::Policy(e.to_string()))?;
        // Fan out to every provider before and after the change (removed ones learn of it).
        let mut followers = r.followers_now.clone();
        for u in change.members_after.iter().map(String::as_str).chain(
            after
                .participants
                .participants
                .iter()
                .map(|p| p.user.as_str()),
        ) {
            if let Some(d) = mimi_proto::uri::domain_of(u)
                && d != self.cfg.domain
            {
                followers.insert(d);
            }
        }
        Ok((s, followers))
    }

    /// An added KeyPackage must have come through this hub's `/keyMaterial` for this room from
    /// the provider its credential names.
    fn check_kp_route(
        &self,
        room: &RoomUri,
        kp: &openmls::prelude::KeyPackage,
        user: &UserUri,
    ) -> Result<(), Rejected> {
        let kpref = kp
            .hash_ref(&self.crypto)
            .map_err(|e| Rejected::Policy(format!("cannot hash an added KeyPackage: {e:?}")))?;
        let key = keys::join(&[room.as_str().as_bytes(), kpref.as_slice()]);
        let route = self
            .store
            .get(Table::HubKpRoutes, &key)
            .ok()
            .flatten()
            .and_then(|b| rows::decode::<KpRouteRow>(Table::HubKpRoutes, &b).ok());
        match route {
            Some(r) if r.domain == user.domain().as_str() => Ok(()),
            Some(r) => Err(Rejected::Policy(format!(
                "the KeyPackage added for {user} was served by {}, not by {}",
                r.domain,
                user.domain()
            ))),
            None => Err(Rejected::Policy(format!(
                "the KeyPackage added for {user} was not claimed through this hub's /keyMaterial for {room}"
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)] // the parts of one accepted commit
    fn accept_commit(
        &mut self,
        id: RequestId,
        room: &RoomUri,
        commit: &MlsMessage,
        s: Staged,
        followers: BTreeSet<Domain>,
        welcome: Option<Welcome>,
        group_info_option: &GroupInfoOption,
        ratchet_tree_option: RatchetTreeOption,
        member: Option<&str>,
    ) {
        let now = self.now_ms;
        let ours = self.cfg.domain.clone();
        let Some(r) = self.hub.rooms.get_mut(room) else {
            return;
        };
        let (sender_leaf, committer) = (s.sender_leaf, s.client.clone());
        let added: Vec<Vec<u8>> = s
            .staged
            .add_proposals()
            .filter_map(|a| {
                a.add_proposal()
                    .key_package()
                    .hash_ref(&self.crypto)
                    .ok()
                    .map(|x| x.as_slice().to_vec())
            })
            .collect();
        if let Err(e) = r.group.merge_commit(&r.storage, s.staged) {
            return self.internal_error(id, format!("merging an accepted commit: {e:?}"));
        }
        let new_epoch = r.epoch();
        // An external joiner's leaf exists only now.
        let committer_leaf = sender_leaf.or_else(|| {
            r.group
                .treesync()
                .full_leaves()
                .find(|(_, leaf)| client_of(leaf.credential()).as_ref() == Some(&committer))
                .map(|(i, _)| i.u32())
        });
        r.row.group_info = stored_group_info(
            &self.crypto,
            r,
            group_info_option,
            committer_leaf,
            new_epoch,
        )
        .unwrap_or_default();
        let pending = std::mem::take(&mut r.pending);
        r.followers_now = r.compute_followers(&ours);
        r.row
            .followers
            .extend(followers.iter().map(ToString::to_string));
        // The tree travels with a Welcome only.
        let tree_option = welcome.as_ref().map(|_| match ratchet_tree_option {
            RatchetTreeOption::DistributionService => RatchetTreeOption::Full {
                ratchet_tree: export_tree(&r.group),
            },
            other => other,
        });
        let rk = room.as_str().as_bytes().to_vec();
        for n in 0..pending.len() as u64 {
            self.writes
                .delete(Table::HubPending, keys::with_seq(&[&rk], n));
        }
        self.flush_mls(room);
        self.save_room_row(room);
        let fanout = FanoutMessage {
            timestamp: now,
            message: commit.clone(),
            extra: FanoutExtra::Commit {
                external_proposals: vec![],
            },
        };
        self.fan_out(
            room,
            fanout.to_bytes(),
            &followers,
            now,
            DeliveryKind::Commit,
            true,
        );
        if let (Some(w), Some(tree_option)) = (welcome, tree_option) {
            self.route_welcome(room, w, tree_option, now, &added);
        }
        self.sweep_kp_routes(room, &added);
        // A local committer is a member now: it receives the room.
        if let Some(client) = member
            && let Err(e) = self.subscribe(client, room, true)
        {
            return self.store_failed(Some(id), e);
        }
        self.stats.hub_accepted += 1;
        self.respond(
            id,
            update_response(
                UpdateOutcome::Success {
                    accepted_timestamp: now,
                },
                "",
            ),
        );
    }

    /// Sends the Welcome to the providers (and local clients) of the new members' KeyPackages.
    fn route_welcome(
        &mut self,
        room: &RoomUri,
        w: Welcome,
        tree_option: RatchetTreeOption,
        now: u64,
        added: &[Vec<u8>],
    ) {
        let mut targets: BTreeSet<Domain> = BTreeSet::new();
        for nm in w.new_members() {
            if !added.contains(&nm.0) {
                continue;
            }
            let key = keys::join(&[room.as_str().as_bytes(), &nm.0]);
            if let Ok(Some(b)) = self.store.get(Table::HubKpRoutes, &key)
                && let Ok(route) = rows::decode::<KpRouteRow>(Table::HubKpRoutes, &b)
                && let Ok(d) = Domain::parse(&route.domain)
            {
                targets.insert(d);
            }
        }
        let wm = FanoutMessage {
            timestamp: now,
            message: MlsMessage {
                body: MlsMessageBody::Welcome(w),
            },
            extra: FanoutExtra::Welcome {
                ratchet_tree_option: tree_option,
            },
        };
        let local = targets.remove(&self.cfg.domain);
        self.fan_out(
            room,
            wm.to_bytes(),
            &targets,
            now,
            DeliveryKind::Welcome,
            local,
        );
    }

    /// Drops the routes the commit used, and this room's expired ones.
    fn sweep_kp_routes(&mut self, room: &RoomUri, used: &[Vec<u8>]) {
        let rk = room.as_str().as_bytes();
        for kpref in used {
            self.writes
                .delete(Table::HubKpRoutes, keys::join(&[rk, kpref]));
        }
        let now_s = self.now_ms / 1000;
        if let Ok(all) = self
            .store
            .scan(Table::HubKpRoutes, &keys::prefix(&[rk]), None, 10_000)
        {
            for (k, v) in all {
                if rows::decode::<KpRouteRow>(Table::HubKpRoutes, &v)
                    .is_ok_and(|r| r.not_after < now_s)
                {
                    self.writes.delete(Table::HubKpRoutes, k);
                }
            }
        }
    }
}

/// The GroupInfo to serve for the new epoch: the full one given, or one rebuilt from a
/// PartialGroupInfo and the hub's own view, checked to belong to `epoch`.
fn stored_group_info(
    crypto: &impl OpenMlsCrypto,
    r: &HubRoom,
    option: &GroupInfoOption,
    committer_leaf: Option<u32>,
    epoch: u64,
) -> Option<Vec<u8>> {
    match option {
        GroupInfoOption::Full { group_info } => (group_info.group_context.epoch == epoch
            && group_info.group_context.group_id.0 == r.group.group_id().as_slice())
        .then(|| group_info.to_bytes()),
        GroupInfoOption::Partial { partial_group_info } => {
            let gc_bytes = r.group.group_context().tls_serialize_detached().ok()?;
            let group_context = mimi_proto::mls::GroupContext::from_bytes(&gc_bytes).ok()?;
            let tag = r.group.confirmation_tag().tls_serialize_detached().ok()?;
            let gi = GroupInfo {
                group_context,
                extensions: partial_group_info.group_info_extensions.clone(),
                confirmation_tag: Bytes::from_bytes(&tag).ok()?,
                signer: committer_leaf?,
                signature: partial_group_info.signature.clone(),
            };
            // Keep it only if the committer's signature covers it.
            let leaf = r.group.leaf(LeafNodeIndex::new(gi.signer))?;
            let mut tbs = gi.group_context.to_bytes();
            gi.extensions.encode(&mut tbs);
            gi.confirmation_tag.encode(&mut tbs);
            gi.signer.encode(&mut tbs);
            mimi_proto::crypto::verify_with_label(
                crypto,
                gi.group_context.cipher_suite,
                leaf.signature_key().as_slice(),
                "GroupInfoTBS",
                &tbs,
                &gi.signature,
            )
            .ok()?;
            Some(gi.to_bytes())
        }
    }
}
