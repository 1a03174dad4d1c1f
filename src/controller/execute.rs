//! The effect of each action step, and what the clusters show for it. `observe` only reads;
//! `act` writes, idempotently (running it twice leaves the clusters as running it once). The
//! decision between them is `steps::next`, pure. A [`Job`] is one volume of the action; a
//! [`GroupJob`] is all the volumes of its application group, decided together
//! (`steps::group`).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PostParams};
use serde_json::json;

use super::apply::{delete_if_present, ensure, field_manager};
use super::clusters::ClusterRef;
use super::context::Context;
use super::error::Error;
use super::finalizer::release_finalizer;
use super::peer_side::destination_endpoint;
use super::restore_points::snapshots;
use super::workloads::{self, Usage};
use crate::model::action::Verb;
use crate::model::group::unsafe_claims;
use crate::model::names::Names;
use crate::model::role::Role;
use crate::model::volsync::{ReplicationDestination, ReplicationSource, ServiceType};
use crate::model::workload::{CountFrom, WorkloadId, missing_on_target, scale_up_patch, scale_up_targets};
use crate::model::{keys, marks};
use crate::plan::action::{
    KeptCopy, keep_snapshot_patch, kept_copy, key_patch, local_source, one_time_source, pause_patch, restored_pvc,
};
use crate::plan::fence::generation;
use crate::plan::restore_points;
use crate::plan::{self, Psk};
use crate::steps::group::{GroupMove, next_for_group};
use crate::steps::{Observed, OneTimeSource, RestorePoint, Step, Transition, next};

/// One volume of a running action: what it is, where, and the two clusters.
pub struct Job<'a> {
    pub ctx: &'a Context,
    pub verb: Verb,
    /// The request's text: the manual trigger of its syncs.
    pub trigger: String,
    pub namespace: String,
    pub names: Names,
    /// Every PVC of the volume's application group (itself included): the workloads of any of
    /// them are scaled as one application.
    pub group: Vec<String>,
    pub here: ClusterRef,
    pub peer: ClusterRef,
}

fn role_of(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.annotations().get(keys::ROLE).map(String::as_str)
}

fn has_finalizer(pvc: &PersistentVolumeClaim) -> bool {
    marks::has_finalizer(&pvc.metadata)
}

impl Job<'_> {
    async fn pvc_on(&self, on: &ClusterRef) -> Result<Option<PersistentVolumeClaim>, Error> {
        on.call(
            "read PVC",
            on.api::<PersistentVolumeClaim>(&self.namespace)
                .get_opt(&self.names.pvc),
        )
        .await
    }

    async fn pvc_here(&self) -> Result<PersistentVolumeClaim, Error> {
        self.pvc_on(&self.here)
            .await?
            .ok_or(Error::Missing("PVC (it was deleted)"))
    }

    async fn source(&self, on: &ClusterRef, name: &str) -> Result<Option<ReplicationSource>, Error> {
        on.call("read ReplicationSource", on.api(&self.namespace).get_opt(name))
            .await
    }

    async fn destination(&self, on: &ClusterRef) -> Result<Option<ReplicationDestination>, Error> {
        on.call(
            "read ReplicationDestination",
            on.api(&self.namespace).get_opt(&self.names.replication_destination),
        )
        .await
    }

    async fn usage(&self, on: &ClusterRef) -> Result<Usage, Error> {
        workloads::usage(on, &self.namespace, &self.group).await
    }

    /// The pair's key, from this cluster's Secret (written there when protection began).
    async fn psk(&self) -> Result<Psk, Error> {
        let secrets = self.here.api::<Secret>(&self.namespace);
        let secret = self
            .here
            .call("read Secret", secrets.get_opt(&self.names.secret))
            .await?;
        secret
            .as_ref()
            .and_then(Psk::from_secret)
            .ok_or(Error::Missing("pre-shared key Secret"))
    }

    /// Protection planned from this cluster, from the PVC and the pair's key as they are now.
    async fn protect_plan(&self) -> Result<plan::ProtectPlan, Error> {
        let (pvc, psk) = (self.pvc_here().await?, self.psk().await?);
        Ok(plan::protect(&pvc, &self.ctx.config.instance(), &psk, None)?)
    }

    /// How the peer's destination is reached, from this PVC's settings (no key needed).
    async fn service_type(&self) -> Result<ServiceType, Error> {
        let pvc = self.pvc_here().await?;
        Ok(plan::protect::settings(&pvc, &self.ctx.config.instance())?.service_type)
    }

    /// Where this cluster reaches the peer's `rd-P`, once it exists and has an address.
    async fn peer_endpoint(&self, service_type: ServiceType) -> Result<Option<plan::Endpoint>, Error> {
        destination_endpoint(self.ctx, &self.namespace, &self.names, service_type).await
    }

    async fn one_time(&self, name: &str) -> Result<Observed, Error> {
        let rs = self.source(&self.here, name).await?;
        Ok(Observed::OneTime(rs.map(|rs| {
            let mover = rs.status.as_ref().and_then(|s| s.sync.latest_mover_status.as_ref());
            OneTimeSource {
                trigger: rs.spec.trigger.as_ref().and_then(|t| t.manual.clone()),
                last_manual_sync: rs.last_manual_sync().map(str::to_string),
                last_error: mover
                    .filter(|m| m.result.as_deref() == Some("Failed"))
                    .map(|m| m.logs.clone().unwrap_or_else(|| "failed".into())),
            }
        })))
    }

    /// What is left of objects a delete step removes.
    async fn present(&self, on: &ClusterRef, sources: &[&str], destination: bool) -> Result<Observed, Error> {
        let mut left = Vec::new();
        for name in sources {
            if self.source(on, name).await?.is_some() {
                left.push(format!("ReplicationSource {name} on {}", on.name));
            }
        }
        if destination && self.destination(on).await?.is_some() {
            left.push(format!(
                "ReplicationDestination {} on {}",
                self.names.replication_destination, on.name
            ));
        }
        Ok(Observed::Present(left))
    }

    /// Snapshots a failover kept (labelled ours and do-not-delete).
    async fn kept_snapshots(&self) -> Result<Vec<String>, Error> {
        // Restore points are kept past the failover (unprotect removes them).
        let selector = format!(
            "{},{},!{}",
            self.names.selector(),
            keys::VOLSYNC_DO_NOT_DELETE,
            keys::RESTORE_POINT_LABEL
        );
        let list = self
            .here
            .call(
                "list VolumeSnapshots",
                snapshots(&self.here, &self.namespace).list(&ListParams::default().labels(&selector)),
            )
            .await?;
        Ok(list.items.iter().map(|s| s.name_any()).collect())
    }

    /// The restore point the PVC names (`volsync-dr.io/restore-point`), if it names one.
    async fn chosen_point(&self) -> Result<Option<Result<String, String>>, Error> {
        let pvc = self.pvc_here().await?;
        let Some(wanted) = pvc.annotations().get(keys::RESTORE_POINT) else {
            return Ok(None);
        };
        let mut points = super::restore_points::kept(&self.here, &self.namespace, &self.names).await?;
        restore_points::newest_first(&mut points);
        Ok(Some(restore_points::choose(&points, wanted).map(|p| p.name.clone())))
    }

    async fn restore_point(&self) -> Result<RestorePoint, Error> {
        match self.chosen_point().await? {
            Some(Ok(name)) => return Ok(RestorePoint::Image { name, kept: true }),
            Some(Err(missing)) => return Ok(RestorePoint::Missing(missing)),
            None => {}
        }
        let Some(rd) = self.destination(&self.here).await? else {
            return Ok(RestorePoint::NoDestination);
        };
        let Some(image) = rd.latest_image() else {
            return Ok(RestorePoint::NoImage);
        };
        if image.kind != "VolumeSnapshot" {
            // copyMethod Direct: the image is the PVC itself; there is no snapshot to keep.
            return Ok(RestorePoint::Image {
                name: image.name.clone(),
                kept: true,
            });
        }
        let snapshot = self
            .here
            .call(
                "read VolumeSnapshot",
                snapshots(&self.here, &self.namespace).get_opt(&image.name),
            )
            .await?;
        Ok(match snapshot {
            None => RestorePoint::NoImage,
            Some(s) => RestorePoint::Image {
                name: image.name.clone(),
                kept: s.labels().contains_key(keys::VOLSYNC_DO_NOT_DELETE),
            },
        })
    }

    /// The scale-up of this step: target cluster, its usage, and what each workload gets.
    async fn scale_up_plan(&self, step: Step) -> Result<(ClusterRef, Usage, Vec<(WorkloadId, i32)>), Error> {
        if step == Step::ScaleUpHere {
            let target = self.usage(&self.here).await?;
            let todo = scale_up_targets(CountFrom::OwnOrOne, &target.workloads, &[]);
            return Ok((self.here.clone(), target, todo));
        }
        let target = self.usage(&self.peer).await?;
        let source = self.usage(&self.here).await?.workloads;
        let rule = if self.verb == Verb::Failback {
            CountFrom::OwnThenSource
        } else {
            CountFrom::SourceThenOwn
        };
        let todo = scale_up_targets(rule, &target.workloads, &source);
        Ok((self.peer.clone(), target, todo))
    }

    /// The volumes the workloads still to scale up would mount on `on` whose data is not
    /// there (the invariant of `model::group::unsafe_claims`). The other cluster is read when
    /// it answers; failover runs without it.
    async fn not_arrived(
        &self,
        on: &ClusterRef,
        target: &Usage,
        todo: &[(WorkloadId, i32)],
    ) -> Result<Vec<String>, Error> {
        if todo.is_empty() {
            return Ok(vec![]);
        }
        let other = if on.name == self.here.name {
            &self.peer
        } else {
            &self.here
        };
        let target_states = workloads::claim_states(on, &self.namespace).await?;
        let source_states = workloads::claim_states(other, &self.namespace).await.ok();
        let mut not_arrived = Vec::new();
        for (id, replicas) in todo {
            let Some(claims) = target.claims.iter().find(|c| c.workload == *id) else {
                continue;
            };
            for claim in unsafe_claims(claims, *replicas, &target_states, source_states.as_deref()) {
                if !not_arrived.contains(&claim) {
                    not_arrived.push(claim);
                }
            }
        }
        Ok(not_arrived)
    }

    /// This volume's preconditions that need the clusters; an unreachable peer is a refusal,
    /// not a retry.
    async fn volume_problems(&self) -> Result<Vec<String>, Error> {
        let peer = &self.peer.name;
        if self.verb == Verb::RotateKey {
            let mut problems = Vec::new();
            if self.source(&self.here, &self.names.replication_source).await?.is_none() {
                problems.push(format!(
                    "rotate-key needs the PVC protected first: there is no scheduled ReplicationSource {} yet",
                    self.names.replication_source
                ));
            }
            match self.key_on(&self.peer).await {
                Ok(Some(_)) => {}
                Ok(None) => problems.push(format!(
                    "cluster {peer} has no Secret {} for this PVC: wait for volsync-dr.io/state=Protected",
                    self.names.secret
                )),
                Err(Error::Peer { source, .. }) => problems.push(format!(
                    "cluster {peer} is unreachable ({source}): rotate-key changes the key on both clusters, so it is refused while either is away"
                )),
                Err(e) => return Err(e),
            }
            return Ok(problems);
        }
        if self.verb == Verb::SyncNow {
            let scheduled = self.source(&self.here, &self.names.replication_source).await?;
            return Ok(if scheduled.is_none() {
                vec![format!(
                    "sync-now needs the PVC protected first: there is no scheduled ReplicationSource {} yet (wait for volsync-dr.io/state=Protected)",
                    self.names.replication_source
                )]
            } else {
                vec![]
            });
        }
        let peer_pvc = match self.pvc_on(&self.peer).await {
            Ok(p) => p,
            Err(Error::Peer { source, .. }) => {
                return Ok(vec![format!(
                    "cluster {peer} is unreachable ({source}): {} needs it",
                    self.verb
                )]);
            }
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        let Some(peer_pvc) = peer_pvc else {
            return Ok(vec![format!(
                "there is no PVC {}/{} on cluster {peer}",
                self.namespace, self.names.pvc
            )]);
        };
        let peer_role = role_of(&peer_pvc).unwrap_or("none");
        match self.verb {
            Verb::Migrate if peer_role != Role::Secondary.as_str() => problems.push(format!(
                "the PVC on cluster {peer} is not the secondary (volsync-dr.io/role={peer_role})"
            )),
            Verb::Migrate => match self.peer_endpoint(self.service_type().await?).await {
                Ok(Some(_)) => {}
                Ok(None) => problems.push(format!(
                    "the ReplicationDestination on cluster {peer} has no address yet; wait for volsync-dr.io/state=Protected"
                )),
                Err(e) => problems.push(format!("cannot read the destination on cluster {peer}: {e}")),
            },
            Verb::Failback if peer_role != Role::Primary.as_str() && peer_role != Role::Fenced.as_str() => {
                problems.push(format!(
                    "failback returns the application after a failover, but the PVC on cluster {peer} is not primary \
                     or fenced (volsync-dr.io/role={peer_role}); to move the application, request migrate"
                ))
            }
            _ => {}
        }
        Ok(problems)
    }

    /// The application's preconditions: every workload that runs here exists on the peer.
    async fn workload_problems(&self) -> Result<Vec<String>, Error> {
        let (here, peer) = (&self.here.name, &self.peer.name);
        if matches!(self.verb, Verb::SyncNow | Verb::RotateKey) {
            return Ok(vec![]);
        }
        let mut problems = Vec::new();
        let here_usage = self.usage(&self.here).await?;
        let peer_usage = match self.usage(&self.peer).await {
            Ok(u) => u,
            Err(e) => {
                problems.push(format!("cannot list workloads on cluster {peer}: {e}"));
                return Ok(problems);
            }
        };
        for id in missing_on_target(&here_usage.workloads, &peer_usage.workloads) {
            problems.push(format!(
                "{id} mounts the PVC on {here} but does not exist on cluster {peer}: create it there (it may have 0 replicas) so the application can start"
            ));
        }
        Ok(problems)
    }

    /// What the clusters show for `step`.
    pub async fn observe(&self, step: Step) -> Result<Observed, Error> {
        let names = &self.names;
        Ok(match step {
            Step::CheckPreconditions => {
                let mut problems = self.volume_problems().await?;
                problems.extend(self.workload_problems().await?);
                Observed::Problems(problems)
            }
            Step::ScaleDownHere | Step::ScaleDownPeer => {
                let on = if step == Step::ScaleDownHere {
                    &self.here
                } else {
                    &self.peer
                };
                let usage = self.usage(on).await?;
                Observed::ScaleDown {
                    running: usage
                        .workloads
                        .iter()
                        .filter(|w| w.replicas > 0)
                        .map(|w| format!("{} on {}", w.id, on.name))
                        .collect(),
                    pods: usage.pods.iter().map(|p| format!("{p} on {}", on.name)).collect(),
                }
            }
            Step::ScaleUpHere | Step::ScaleUpPeer => {
                let (on, usage, todo) = self.scale_up_plan(step).await?;
                let not_arrived = self.not_arrived(&on, &usage, &todo).await?;
                let target = usage.workloads;
                Observed::ScaleUp {
                    not_arrived,
                    to_scale: todo
                        .iter()
                        .map(|(id, n)| format!("{id} to {n} on {}", on.name))
                        .collect(),
                    not_ready: target
                        .iter()
                        .filter(|w| w.ready < w.replicas)
                        .map(|w| format!("{} ({}/{} ready) on {}", w.id, w.ready, w.replicas, on.name))
                        .collect(),
                    workloads: target.len(),
                }
            }
            Step::DeleteScheduledSync => self.present(&self.here, &[&names.replication_source], false).await?,
            Step::DeleteStaleSyncOnPeer => {
                self.present(
                    &self.peer,
                    &[&names.replication_source, &names.replication_source_latest],
                    false,
                )
                .await?
            }
            Step::DeleteOneTimeSync => {
                self.present(&self.here, &[&names.replication_source_latest], false)
                    .await?
            }
            Step::DeleteDestinationOnPeer => self.present(&self.peer, &[], true).await?,
            Step::DeleteLocalSync => {
                self.present(&self.here, &[&names.replication_source_local], false)
                    .await?
            }
            Step::DeleteDestination => self.present(&self.here, &[], true).await?,
            Step::DeleteRestored => {
                let mut left = self.kept_snapshots().await?;
                if self.restored().await?.is_some() {
                    left.push(names.restored_pvc.clone());
                }
                Observed::Present(left)
            }
            Step::CreateDestinationOnPeer | Step::WaitForDestinationOnPeer => {
                let address = self.peer_endpoint(self.service_type().await?).await?.is_some();
                // An endpoint implies the RD; only without one is its existence a question.
                let exists = address || self.destination(&self.peer).await?.is_some();
                Observed::Destination { exists, address }
            }
            Step::CreateOneTimeSync | Step::WaitForSync => self.one_time(&names.replication_source_latest).await?,
            Step::CreateLocalSync | Step::WaitForLocalSync => self.one_time(&names.replication_source_local).await?,
            Step::KeepSnapshot => Observed::Snapshot(self.restore_point().await?),
            Step::RestoreSnapshot => Observed::Restored {
                exists: self.restored().await?.is_some(),
            },
            Step::KeepDivergedCopy | Step::WaitForKeptCopy => {
                let name = self.names.kept_copy(&self.trigger);
                let kept = self
                    .peer
                    .call(
                        "read VolumeSnapshot",
                        snapshots(&self.peer, &self.namespace).get_opt(&name),
                    )
                    .await?;
                Observed::Kept {
                    exists: kept.is_some(),
                    ready: kept.is_some_and(|s| s.data["status"]["readyToUse"] == true),
                }
            }
            Step::SwapRoles | Step::RestoreRoles => {
                let here = self.pvc_here().await?;
                let peer = self.pvc_on(&self.peer).await?;
                let here_done = role_of(&here) == Some(Role::Secondary.as_str()) && !has_finalizer(&here);
                let peer_done = peer.as_ref().and_then(role_of) == Some(Role::Primary.as_str());
                Observed::Roles {
                    done: here_done && peer_done,
                }
            }
            Step::TakeOver => Observed::Roles {
                done: role_of(&self.pvc_here().await?) == Some(Role::Primary.as_str()),
            },
            Step::WaitForSyncIdle => Observed::Syncing(
                self.source(&self.here, &names.replication_source)
                    .await?
                    .and_then(|rs| rs.sync_running()),
            ),
            Step::PauseSync | Step::ResumeSync => {
                let paused = self
                    .source(&self.here, &names.replication_source)
                    .await?
                    .is_some_and(|rs| rs.spec.paused == Some(true));
                Observed::Shown(paused == (step == Step::PauseSync))
            }
            Step::RotateKeyOnPeer | Step::RotateKeyHere => {
                let here = self.key_on(&self.here).await?;
                let peer = self.key_on(&self.peer).await?;
                let same = here.is_some() && here == peer;
                Observed::Shown(if step == Step::RotateKeyOnPeer { !same } else { same })
            }
            Step::WaitForProtection => {
                let peer = self.pvc_on(&self.peer).await?;
                let state = peer.as_ref().and_then(|p| p.annotations().get(keys::STATE).cloned());
                let primary = peer.as_ref().and_then(role_of) == Some(Role::Primary.as_str());
                let scheduled = self.source(&self.peer, &names.replication_source).await?.is_some();
                Observed::Protection {
                    protected: primary && scheduled && state.as_deref() == Some("Protected"),
                    state,
                }
            }
        })
    }

    /// The pair's key as `on`'s Secret holds it.
    async fn key_on(&self, on: &ClusterRef) -> Result<Option<Psk>, Error> {
        let secret = on
            .call(
                "read Secret",
                on.api::<Secret>(&self.namespace).get_opt(&self.names.secret),
            )
            .await?;
        Ok(secret.as_ref().and_then(Psk::from_secret))
    }

    /// `psk` into `on`'s Secret, stamped with now.
    async fn write_key(&self, on: &ClusterRef, psk: &Psk) -> Result<(), Error> {
        let created = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let patch = Patch::Merge(key_patch(psk, &created.to_string()));
        on.call(
            "write key",
            on.api::<Secret>(&self.namespace)
                .patch(&self.names.secret, &field_manager(), &patch),
        )
        .await?;
        Ok(())
    }

    async fn pause_sync(&self, paused: bool) -> Result<(), Error> {
        let patch = Patch::Merge(pause_patch(paused));
        self.here
            .call(
                if paused {
                    "pause ReplicationSource"
                } else {
                    "resume ReplicationSource"
                },
                self.here.api::<ReplicationSource>(&self.namespace).patch(
                    &self.names.replication_source,
                    &field_manager(),
                    &patch,
                ),
            )
            .await?;
        Ok(())
    }

    async fn restored(&self) -> Result<Option<PersistentVolumeClaim>, Error> {
        self.here
            .call(
                "read restored PVC",
                self.here
                    .api::<PersistentVolumeClaim>(&self.namespace)
                    .get_opt(&self.names.restored_pvc),
            )
            .await
    }

    async fn delete_source(&self, on: &ClusterRef, name: &str) -> Result<(), Error> {
        on.call(
            "delete ReplicationSource",
            delete_if_present(&on.api::<ReplicationSource>(&self.namespace), name),
        )
        .await?;
        Ok(())
    }

    async fn delete_destination(&self, on: &ClusterRef) -> Result<(), Error> {
        on.call(
            "delete ReplicationDestination",
            delete_if_present(
                &on.api::<ReplicationDestination>(&self.namespace),
                &self.names.replication_destination,
            ),
        )
        .await?;
        Ok(())
    }

    /// Merge-patch annotations of the PVC on a cluster.
    async fn annotate(&self, on: &ClusterRef, annotations: serde_json::Value) -> Result<(), Error> {
        on.call(
            "write PVC roles",
            on.api::<PersistentVolumeClaim>(&self.namespace).patch(
                &self.names.pvc,
                &field_manager(),
                &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
            ),
        )
        .await?;
        Ok(())
    }

    /// The pair's takeover generation after a role change that both sides agree on (migrate,
    /// failback): the higher of the two, so neither side is stale afterwards.
    async fn agreed_generation(&self) -> Result<String, Error> {
        let here = generation(self.pvc_here().await?.annotations());
        let peer = self
            .pvc_on(&self.peer)
            .await?
            .map_or(0, |p| generation(p.annotations()));
        Ok(here.max(peer).to_string())
    }

    /// This PVC becomes the secondary: role, generation, and no finalizer (a secondary holds
    /// none; its cleanup is driven from the primary).
    async fn become_secondary(&self, generation: &str) -> Result<(), Error> {
        let annotations = json!({keys::ROLE: Role::Secondary.as_str(), keys::TAKEOVER_GENERATION: generation});
        self.annotate(&self.here, annotations).await?;
        let pvc = self.pvc_here().await?;
        if has_finalizer(&pvc) {
            let pvcs = self.here.api::<PersistentVolumeClaim>(&self.namespace);
            self.here
                .call("remove finalizer", release_finalizer(&pvcs, &pvc))
                .await?;
        }
        Ok(())
    }

    /// Perform `step`'s effect.
    pub async fn act(&self, step: Step) -> Result<(), Error> {
        let names = &self.names;
        match step {
            Step::CheckPreconditions
            | Step::WaitForSync
            | Step::WaitForLocalSync
            | Step::WaitForProtection
            | Step::WaitForSyncIdle => Ok(()),
            Step::PauseSync => self.pause_sync(true).await,
            Step::ResumeSync => self.pause_sync(false).await,
            // Written only while both sides hold the same key: a second try after a crash
            // between this write and its record finds them different, and is finished.
            Step::RotateKeyOnPeer => self.write_key(&self.peer, &super::reconcile::new_psk()?).await,
            Step::RotateKeyHere => {
                let key = self
                    .key_on(&self.peer)
                    .await?
                    .ok_or(Error::Missing("the new key in the peer's Secret"))?;
                self.write_key(&self.here, &key).await
            }
            Step::ScaleDownHere => self.scale_down(&self.here).await,
            Step::ScaleDownPeer => self.scale_down(&self.peer).await,
            Step::ScaleUpHere | Step::ScaleUpPeer => self.scale_up(step).await,
            Step::DeleteScheduledSync => self.delete_source(&self.here, &names.replication_source).await,
            Step::DeleteStaleSyncOnPeer => {
                self.delete_source(&self.peer, &names.replication_source).await?;
                self.delete_source(&self.peer, &names.replication_source_latest).await
            }
            Step::DeleteOneTimeSync => self.delete_source(&self.here, &names.replication_source_latest).await,
            Step::DeleteDestinationOnPeer => self.delete_destination(&self.peer).await,
            Step::DeleteLocalSync => self.delete_source(&self.here, &names.replication_source_local).await,
            Step::DeleteDestination => self.delete_destination(&self.here).await,
            Step::DeleteRestored => self.delete_restored().await,
            Step::CreateDestinationOnPeer | Step::WaitForDestinationOnPeer => self.create_destination_on_peer().await,
            Step::CreateOneTimeSync => self.create_one_time_sync().await,
            Step::CreateLocalSync => self.create_local_sync().await,
            Step::KeepSnapshot => self.keep_snapshot().await,
            Step::RestoreSnapshot => self.restore_snapshot().await,
            Step::KeepDivergedCopy | Step::WaitForKeptCopy => self.keep_diverged_copy().await,
            Step::SwapRoles => {
                // Here first: when the peer's instance sees its PVC become primary, this side
                // already says secondary, so it protects toward here at once.
                let generation = self.agreed_generation().await?;
                self.become_secondary(&generation).await?;
                let primary = json!({keys::ROLE: Role::Primary.as_str(), keys::TAKEOVER_GENERATION: generation});
                self.annotate(&self.peer, primary).await
            }
            Step::TakeOver => {
                // One generation past the pair's: if the old primary comes back still saying
                // primary, the generations say which copy took over (`plan::fence`).
                let taken_over = (generation(self.pvc_here().await?.annotations()) + 1).to_string();
                let primary = json!({keys::ROLE: Role::Primary.as_str(), keys::TAKEOVER_GENERATION: taken_over});
                self.annotate(&self.here, primary).await
            }
            Step::RestoreRoles => {
                let generation = self.agreed_generation().await?;
                self.become_secondary(&generation).await?;
                // Touch the peer's PVC so its instance looks again now: its protection resumes,
                // and a fence ends here.
                let primary_again = json!({keys::ROLE: Role::Primary.as_str(), keys::STATE: "Pending",
                                           keys::FENCED: null, keys::TAKEOVER_GENERATION: generation});
                self.annotate(&self.peer, primary_again).await
            }
        }
    }

    async fn scale_down(&self, on: &ClusterRef) -> Result<(), Error> {
        let ns = &self.namespace;
        for w in self.usage(on).await?.workloads {
            if let Some(body) = w.scale_down_patch() {
                workloads::patch(on, ns, &w.id, &body).await?;
                tracing::info!(namespace = ns, workload = %w.id, cluster = on.name, replicas = w.replicas, "scaled down");
            }
        }
        Ok(())
    }

    async fn scale_up(&self, step: Step) -> Result<(), Error> {
        let ns = &self.namespace;
        let (on, _, todo) = self.scale_up_plan(step).await?;
        for (id, replicas) in todo {
            workloads::patch(&on, ns, &id, &scale_up_patch(replicas)).await?;
            tracing::info!(namespace = ns, workload = %id, cluster = on.name, replicas, "scaled up");
        }
        Ok(())
    }

    /// The restored PVC and the snapshots a failover kept, once failback no longer needs them.
    async fn delete_restored(&self) -> Result<(), Error> {
        let ns = &self.namespace;
        let pvcs = self.here.api::<PersistentVolumeClaim>(ns);
        self.here
            .call(
                "delete restored PVC",
                delete_if_present(&pvcs, &self.names.restored_pvc),
            )
            .await?;
        let api = snapshots(&self.here, ns);
        for snapshot in self.kept_snapshots().await? {
            self.here
                .call("delete kept VolumeSnapshot", delete_if_present(&api, &snapshot))
                .await?;
        }
        Ok(())
    }

    async fn create_destination_on_peer(&self) -> Result<(), Error> {
        let ns = &self.namespace;
        let p = self.protect_plan().await?;
        let secrets = self.peer.api::<Secret>(ns);
        self.peer
            .call("apply Secret", ensure(&secrets, &p.secondary_secret))
            .await?;
        self.peer
            .call(
                "apply ReplicationDestination",
                ensure(&self.peer.api(ns), &p.replication_destination),
            )
            .await?;
        Ok(())
    }

    /// A copy of the scheduled sync, triggered once by this request.
    async fn create_one_time_sync(&self) -> Result<(), Error> {
        let p = self.protect_plan().await?;
        let endpoint = self
            .peer_endpoint(p.settings.service_type)
            .await?
            .ok_or_else(|| Error::Waiting(format!("the address of the destination on cluster {}", self.peer.name)))?;
        let scheduled = p.scheduled_source(&endpoint);
        let once = one_time_source(&scheduled, &self.names.replication_source_latest, &self.trigger);
        self.here
            .call(
                "apply one-time ReplicationSource",
                ensure(&self.here.api(&self.namespace), &once),
            )
            .await?;
        Ok(())
    }

    /// A sync from the restored copy into this cluster's own destination PVC (failback).
    async fn create_local_sync(&self) -> Result<(), Error> {
        let ns = &self.namespace;
        let rd = self
            .destination(&self.here)
            .await?
            .ok_or(Error::Missing("ReplicationDestination here"))?;
        let address = rd
            .published_address()
            .ok_or_else(|| Error::Waiting("the ReplicationDestination's address here".into()))?;
        let local = local_source(&self.names, ns, address, &self.trigger);
        self.here
            .call("apply local ReplicationSource", ensure(&self.here.api(ns), &local))
            .await?;
        Ok(())
    }

    /// Label the newest image so VolSync does not delete it when the RD goes.
    async fn keep_snapshot(&self) -> Result<(), Error> {
        if let RestorePoint::Image { name, .. } = self.restore_point().await? {
            let patch = Patch::Merge(keep_snapshot_patch(&self.names));
            self.here
                .call(
                    "label VolumeSnapshot",
                    snapshots(&self.here, &self.namespace).patch(&name, &field_manager(), &patch),
                )
                .await?;
        }
        Ok(())
    }

    /// A VolumeSnapshot of the peer's copy, before failback overwrites it, named on that PVC
    /// (`kept-copies`). Labelled ours but never selected by any cleanup: it is the user's.
    async fn keep_diverged_copy(&self) -> Result<(), Error> {
        let ns = &self.namespace;
        let name = self.names.kept_copy(&self.trigger);
        let peer_pvc = self
            .pvc_on(&self.peer)
            .await?
            .ok_or(Error::Missing("PVC on the peer"))?;
        let class = peer_pvc
            .annotations()
            .get(keys::VOLUME_SNAPSHOT_CLASS)
            .cloned()
            .or_else(|| self.ctx.config.destination_volume_snapshot_class.clone());
        let here_pvc = self.pvc_on(&self.here).await?;
        let snapshot = kept_copy(&KeptCopy {
            names: &self.names,
            namespace: ns,
            name: &name,
            request: &self.trigger,
            takeover_generation: here_pvc
                .as_ref()
                .and_then(|p| p.annotations().get(keys::TAKEOVER_GENERATION))
                .map(String::as_str),
            class: class.as_deref(),
        });
        let created = self
            .peer
            .call(
                "create VolumeSnapshot",
                snapshots(&self.peer, ns).create(&PostParams::default(), &snapshot),
            )
            .await;
        match created {
            Err(e) if e.is_conflict() => {}
            other => {
                other?;
            }
        }
        let mut kept: Vec<String> = peer_pvc
            .annotations()
            .get(keys::KEPT_COPIES)
            .map(|k| k.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        if !kept.contains(&name) {
            kept.push(name);
            self.annotate(&self.peer, json!({keys::KEPT_COPIES: kept.join(",")}))
                .await?;
        }
        Ok(())
    }

    async fn restore_snapshot(&self) -> Result<(), Error> {
        if self.restored().await?.is_some() {
            return Ok(());
        }
        let ns = &self.namespace;
        let pvc = self.pvc_here().await?;
        let point = match self.chosen_point().await? {
            Some(Ok(name)) => Some(name),
            Some(Err(missing)) => return Err(Error::Waiting(missing)),
            None => None,
        };
        let restored = restored_pvc(&pvc, &self.names, ns, point.as_deref());
        let pvcs = self.here.api::<PersistentVolumeClaim>(ns);
        let created = self
            .here
            .call("create restored PVC", pvcs.create(&PostParams::default(), &restored))
            .await;
        match created {
            Err(e) if !e.is_conflict() => Err(e),
            _ => Ok(()),
        }
    }

    /// After a failure at `step`: remove a one-time sync that would otherwise still run later.
    pub async fn clean_up_after_failure(&self, step: Step) -> Result<(), Error> {
        match step {
            Step::CreateOneTimeSync | Step::WaitForSync => {
                self.delete_source(&self.here, &self.names.replication_source_latest)
                    .await
            }
            Step::CreateLocalSync | Step::WaitForLocalSync => {
                self.delete_source(&self.here, &self.names.replication_source_local)
                    .await
            }
            // Protection goes on: never left paused (the key here is still the pair's until
            // the last key step, and protection writes it to the peer).
            Step::PauseSync | Step::RotateKeyOnPeer | Step::RotateKeyHere | Step::ResumeSync => {
                self.pause_sync(false).await
            }
            _ => Ok(()),
        }
    }
}

/// The oldest of a group's last completed syncs, as the volumes here showed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub volume: String,
    pub synced: String,
}

/// Every volume of a running action's application group, the PVC that carries the request
/// first. Scaling and preconditions are observed once for the group; every other step per
/// volume, and `steps::group::next_for_group` combines them.
pub struct GroupJob<'a> {
    pub volumes: Vec<Job<'a>>,
}

impl<'a> GroupJob<'a> {
    /// The volume that carries the request.
    pub fn leader(&self) -> &Job<'a> {
        &self.volumes[0]
    }

    /// The preconditions of every volume (named when there are several) and, once, the
    /// application's. An unreachable peer is said once.
    async fn problems(&self) -> Result<Vec<String>, Error> {
        let several = self.volumes.len() > 1;
        let mut problems = Vec::new();
        for job in &self.volumes {
            for problem in job.volume_problems().await? {
                let unreachable = problem.starts_with(&format!("cluster {} is unreachable", job.peer.name));
                if unreachable {
                    return Ok(vec![problem]);
                }
                problems.push(if several {
                    format!("PVC {}: {problem}", job.names.pvc)
                } else {
                    problem
                });
            }
        }
        problems.extend(self.leader().workload_problems().await?);
        Ok(problems)
    }

    /// What the group does at `step`, and what the clusters showed (the leader's view, or the
    /// group's for a group-wide step: what the engine reports the application's outage from).
    pub async fn decide(&self, steps: &[Step], step: Step) -> Result<(GroupMove, Observed), Error> {
        let leader = self.leader();
        if step.is_group_wide() {
            let observed = if step == Step::CheckPreconditions {
                Observed::Problems(self.problems().await?)
            } else {
                leader.observe(step).await?
            };
            let transition = next(steps, step, &observed, &leader.trigger);
            let act_on = if transition == Transition::Act { vec![0] } else { vec![] };
            return Ok((GroupMove { transition, act_on }, observed));
        }
        // The volumes are independent: looked at concurrently, so a group's step takes about
        // as long as one volume's.
        let observed = futures::future::try_join_all(self.volumes.iter().map(|job| job.observe(step))).await?;
        let mut seen: Vec<(&str, Observed)> = self
            .volumes
            .iter()
            .map(|job| job.names.pvc.as_str())
            .zip(observed)
            .collect();
        let group_move = next_for_group(steps, step, &seen, &leader.trigger);
        let observed = seen.swap_remove(0).1;
        Ok((group_move, observed))
    }

    /// The oldest last completed sync among the volumes, from the `last-sync-time` each PVC
    /// here showed as the secondary (a held member keeps it until the action ends).
    pub async fn recovery_point(&self) -> Result<Option<RecoveryPoint>, Error> {
        let mut oldest: Option<(jiff::Timestamp, RecoveryPoint)> = None;
        for job in &self.volumes {
            let pvc = job.pvc_here().await?;
            let Some(synced) = pvc.annotations().get(keys::LAST_SYNC_TIME) else {
                continue;
            };
            let Ok(at) = synced.parse::<jiff::Timestamp>() else {
                continue;
            };
            if oldest.as_ref().is_none_or(|(t, _)| at < *t) {
                let point = RecoveryPoint {
                    volume: job.names.pvc.clone(),
                    synced: synced.clone(),
                };
                oldest = Some((at, point));
            }
        }
        Ok(oldest.map(|(_, point)| point))
    }

    /// Perform `step`'s effect on the volumes that still need it.
    pub async fn act(&self, step: Step, act_on: &[usize]) -> Result<(), Error> {
        let acting = act_on
            .iter()
            .filter_map(|i| self.volumes.get(*i))
            .map(|job| job.act(step));
        futures::future::try_join_all(acting).await?;
        Ok(())
    }

    /// After a failure at `step`: each volume's one-time syncs removed. Every volume is tried;
    /// the first error is returned.
    pub async fn clean_up_after_failure(&self, step: Step) -> Result<(), Error> {
        let mut first_error = None;
        for job in &self.volumes {
            if let Err(e) = job.clean_up_after_failure(step).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
