//! Which offered commits the machine trusts, and which of them wins.
//!
//! A candidate is kept only when its commit object re-hashes to its name, its signature
//! verifies against the target's own configuration for the remote ([`RemotePolicy`], one
//! verification per commit checksum and policy), its collection and ref bindings match, its
//! closure is complete on that source (no `state/<commit>.commitpartial`; for a ref installed
//! in part, its parts are there), and it is not older than what is installed.
//!
//! Commits are read and verified in parallel, each once, as soon as they are read; only the
//! parsed commits that verified are kept (bytes and signatures are dropped), and commits being
//! read and checked together hold at most [`VERIFY_MEMORY_BUDGET`] bytes, so a drive cannot
//! make a listing use more memory than that.

use crate::causes::Causes;
use std::collections::HashMap;
use std::sync::Arc;

use super::{
    fetch_problem_kind, parallel, preference, Candidate, Fetched, FetchedCommit, PolicyKey,
    Resolver, Want, Winner, VERIFY_MEMORY_BUDGET,
};
use crate::object::{
    Checksum, Commit, ObjectId, ObjectKind, Subdirs, MAX_COMMIT_SIZE, MAX_DETACHED_METADATA_SIZE,
};
use crate::schema::{Problem, ProblemKind, SourceKind};
use crate::source::{FetchError, Interrupt, Source};
use crate::trust::{
    CommitCandidate, InstalledCommit, RemotePolicy, TrustError, UpdateKind, Verdict,
};

/// The policies wanting a (source, commit), and whether a ref installed in part does.
type ReadJob = (Vec<PolicyKey>, bool);

impl Resolver<'_> {
    /// Each want with its winner, if any.
    pub(super) fn evaluate_wants(&mut self, wants: Vec<Want>) -> Vec<(Want, Option<Winner>)> {
        let winners = self.evaluate(&wants);
        wants.into_iter().zip(winners).collect()
    }

    /// Checks every candidate of `wants` and picks each one's winner.
    fn evaluate(&mut self, wants: &[Want]) -> Vec<Option<Winner>> {
        let candidates: Vec<Candidate> = wants
            .iter()
            .enumerate()
            .flat_map(|(index, want)| self.candidates(index, want))
            .collect();
        for want in wants {
            self.load_policy(want);
        }
        self.read_and_verify(wants, &candidates);

        let mut accepted: Vec<Vec<(Candidate, u64, Verdict)>> = vec![Vec::new(); wants.len()];
        for candidate in &candidates {
            let want = &wants[candidate.want];
            match self.check(want, candidate) {
                Ok(Some((timestamp, verdict))) => {
                    accepted[candidate.want].push((*candidate, timestamp, verdict))
                }
                Ok(None) => {}
                Err(problem) => self.problems.push(problem),
            }
        }
        accepted
            .into_iter()
            .map(|choices| self.choose(choices))
            .collect()
    }

    /// Reads, in parallel, each (source, commit) not read yet for every remote that wants
    /// it: completeness first, then the commit object (checked against its name) and its
    /// detached metadata, verified at once; only what verified is kept. The first source
    /// whose signatures verify vouches for the commit wherever it is.
    fn read_and_verify(&mut self, wants: &[Want], candidates: &[Candidate]) {
        // Per (source, commit): the policies wanting it, and whether a ref installed in part
        // does (then a commit the source holds in part is read too).
        let mut jobs: HashMap<(usize, Checksum), ReadJob> = HashMap::new();
        for candidate in candidates {
            let want = &wants[candidate.want];
            let policy_key = (want.target, want.remote.clone());
            let read = (candidate.source, candidate.commit);
            let in_part = self
                .installed(want)
                .is_some_and(|installed| !installed.deploy_subpaths.is_empty());
            let decided = match self.fetched.get(&read) {
                None => false,
                Some(Fetched::Read { .. }) => self
                    .verified
                    .get(&(policy_key.clone(), candidate.commit))
                    .is_some_and(|v| {
                        v.is_ok()
                            || v.as_ref()
                                .is_err_and(|r| r.iter().any(|(s, _)| *s == read.0))
                    }),
                // Left unread for refs installed whole: read now for one installed in part.
                Some(Fetched::Partial) => !in_part,
                Some(Fetched::Failed { .. }) => true,
            };
            if decided {
                continue;
            }
            let (policies, any_in_part) = jobs.entry(read).or_default();
            *any_in_part |= in_part;
            if !policies.contains(&policy_key) {
                policies.push(policy_key);
            }
        }
        let mut jobs: Vec<((usize, Checksum), ReadJob)> = jobs.into_iter().collect();
        jobs.sort_by_key(|job| job.0);
        let sources = self.sources;
        let names = &self.names;
        let policies = &self.policies;
        let budget = parallel::MemoryBudget::new(VERIFY_MEMORY_BUDGET);
        let results = parallel::map(
            &jobs,
            parallel::cpu_threads() * 2,
            |((index, commit), (wanted_by, in_part))| {
                let wanted: Vec<(&PolicyKey, &RemotePolicy)> = wanted_by
                    .iter()
                    .filter_map(|key| match policies.get(key) {
                        Some(Ok(policy)) => Some((key, policy)),
                        // The policy's own problem is already listed.
                        _ => None,
                    })
                    .collect();
                read_commit(
                    sources[*index].as_ref(),
                    &names[*index],
                    commit,
                    &wanted,
                    *in_part,
                    &budget,
                )
            },
        );
        for (((index, commit), _), outcome) in jobs.into_iter().zip(results) {
            self.fetched.insert((index, commit), outcome.fetched);
            if let Some(parsed) = outcome.commit {
                self.commits.entry(commit).or_insert(parsed);
            }
            for (policy_key, result) in outcome.verifications {
                let entry = self
                    .verified
                    .entry((policy_key, commit))
                    .or_insert_with(|| Err(Vec::new()));
                match (result, &mut *entry) {
                    (_, Ok(_)) => {}
                    (Ok(verdict), entry) => *entry = Ok(verdict),
                    (Err(error), Err(refusals)) => refusals.push((index, error)),
                }
            }
        }
        // Refusals in source preference order: the best source's reason is shown first.
        let ranks = &self.ranks;
        for verification in self.verified.values_mut() {
            if let Err(refusals) = verification {
                refusals.sort_by_key(|(index, _)| preference(ranks[*index], *index));
            }
        }
    }

    fn load_policy(&mut self, want: &Want) {
        let key = (want.target, want.remote.clone());
        if self.policies.contains_key(&key) {
            return;
        }
        let target = &self.targets[want.target];
        let policy = match target.remote(&want.remote) {
            Some(remote) => RemotePolicy::load(
                &remote.trust_config(),
                &target.trust,
                &self.options.trust_roots,
            ),
            None => Err(TrustError::Config {
                remote: want.remote.as_str().into(),
                detail: format!("it is not configured in {}", target.repo.display()),
            }),
        };
        if let Err(error) = &policy {
            self.problems.push(Problem {
                kind: error.problem_kind(),
                source: target.repo.display().to_string(),
                origin: None,
                ref_name: None,
                reason: crate::causes::text(error),
            });
        }
        self.policies.insert(key, policy);
    }

    /// One candidate's verdict: accepted with its timestamp, skipped (nothing to report), or a
    /// problem saying why it was refused.
    pub(super) fn check(
        &self,
        want: &Want,
        candidate: &Candidate,
    ) -> Result<Option<(u64, Verdict)>, Problem> {
        let source = &self.names[candidate.source];
        let origin = self.sources[candidate.source].info();
        let problem = |kind: ProblemKind, reason: String| Problem {
            kind,
            source: source.clone(),
            origin: Some(Box::new(origin.clone())),
            ref_name: Some(want.ref_name.clone()),
            reason,
        };
        let set_for_all = self
            .installed(want)
            .is_some_and(|i| !i.subpaths.is_empty() && i.deploy_subpaths.is_empty());
        let partly_there = || {
            problem(
                ProblemKind::PartialCommit,
                if set_for_all {
                    format!(
                        "commit {}… of {} on {source} holds only some languages, and the \
                         installation is set for all of them (flatpak config languages): \
                         copy it with every language, or use another source",
                        candidate.commit.short(),
                        want.ref_name,
                    )
                } else {
                    format!(
                        "commit {}… of {} on {source} is only partly there (it is marked \
                         state/{}.commitpartial): copy it onto the drive again, or use \
                         another source",
                        candidate.commit.short(),
                        want.ref_name,
                        candidate.commit
                    )
                },
            )
        };
        // A ref installed in part needs only the parts its update deploys.
        let parts = match self
            .installed(want)
            .map(|i| Subdirs::for_flatpak(&i.deploy_subpaths))
        {
            Some(Ok(parts)) => parts,
            Some(Err(error)) => return Err(problem(ProblemKind::Other, error.to_string())),
            None => None,
        };
        // A computer nearby that holds a ref in part (its own languages) just does not offer
        // it to installations that hold it whole; a drive holding a commit in part was
        // likely cut short, which is worth saying.
        let installed_whole = self.installed(want).is_none_or(|i| i.subpaths.is_empty());
        let partial = match self.fetched.get(&(candidate.source, candidate.commit)) {
            Some(Fetched::Partial) if installed_whole && origin.kind != SourceKind::Drive => {
                return Ok(None)
            }
            Some(Fetched::Partial) => return Err(partly_there()),
            Some(Fetched::Read { partial: true }) if parts.is_none() => return Err(partly_there()),
            Some(Fetched::Read { partial }) => *partial,
            Some(Fetched::Failed { kind, reason }) => return Err(problem(*kind, reason.clone())),
            None => return Ok(None),
        };
        let key = (want.target, want.remote.clone());
        let Some(Ok(policy)) = self.policies.get(&key) else {
            return Ok(None);
        };
        let verdict = match self.verified.get(&(key, candidate.commit)) {
            Some(Ok(verdict)) => verdict.clone(),
            Some(Err(refusals)) => {
                let error = refusals
                    .iter()
                    .find(|(index, _)| *index == candidate.source)
                    .or_else(|| refusals.first())
                    .map(|(_, error)| error);
                return match error {
                    Some(error) => Err(error.to_problem(origin, Some(&want.ref_name))),
                    None => Ok(None),
                };
            }
            None => return Ok(None),
        };
        let Some(data) = self.commits.get(&candidate.commit) else {
            return Ok(None);
        };
        if let (true, Some(parts)) = (partial, &parts) {
            let held = crate::source::holds_parts(
                self.sources[candidate.source].as_ref(),
                &data.commit.root_tree,
                parts,
                &Interrupt::never(),
            );
            if !matches!(held, Ok(true)) {
                return Err(problem(
                    ProblemKind::PartialCommit,
                    format!(
                        "commit {}… of {} on {source} holds only some of its parts, not all of \
                         {parts}: copy it onto the drive again with those languages, or use \
                         another source",
                        candidate.commit.short(),
                        want.ref_name,
                    ),
                ));
            }
        }
        let installed = self.installed(want).map(|i| InstalledCommit {
            checksum: i.commit,
            timestamp: i.timestamp,
        });
        match policy.check_verified_commit_for_ref(
            &candidate.commit,
            &data.commit,
            verdict,
            source,
            &want.ref_name,
            installed,
            false,
        ) {
            // The installed commit itself, unless it brings languages the installation is
            // now set for.
            Ok(accepted)
                if accepted.update == UpdateKind::UpToDate
                    && self
                        .installed(want)
                        .is_none_or(|i| i.added_subpaths().is_empty()) =>
            {
                Ok(None)
            }
            Ok(accepted) => Ok(Some((accepted.timestamp, accepted.verdict))),
            Err(error) => Err(error.to_problem(origin, Some(&want.ref_name))),
        }
    }

    /// The newest accepted commit (ties go to the better source), with every source holding
    /// it, preferred first.
    fn choose(&self, accepted: Vec<(Candidate, u64, Verdict)>) -> Option<Winner> {
        let best_source = |commit: Checksum| {
            accepted
                .iter()
                .filter(|(c, _, _)| c.commit == commit)
                .map(|(c, _, _)| preference(self.ranks[c.source], c.source))
                .min()
        };
        // Commits made within one second share a timestamp; the parent chain still orders them.
        let parent_of = |commit: Checksum| self.commits.get(&commit)?.commit.parent;
        let descends_from = |child: Checksum, ancestor: Checksum| {
            let mut current = parent_of(child);
            for _ in 0..accepted.len() {
                match current {
                    Some(parent) if parent == ancestor => return true,
                    Some(parent) => current = parent_of(parent),
                    None => return false,
                }
            }
            false
        };
        let lineage = |a: Checksum, b: Checksum| {
            if a == b {
                std::cmp::Ordering::Equal
            } else if descends_from(a, b) {
                std::cmp::Ordering::Greater
            } else if descends_from(b, a) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Equal
            }
        };
        let (winner, _, verdict) = accepted.iter().max_by(|a, b| {
            a.1.cmp(&b.1)
                .then_with(|| lineage(a.0.commit, b.0.commit))
                .then_with(|| best_source(b.0.commit).cmp(&best_source(a.0.commit)))
                .then_with(|| b.0.commit.cmp(&a.0.commit))
        })?;
        let mut holders: Vec<usize> = accepted
            .iter()
            .filter(|(c, _, _)| c.commit == winner.commit)
            .map(|(c, _, _)| c.source)
            .collect();
        // Drives holding the whole commit without a ref to it still save a download.
        for (index, source) in self.sources.iter().enumerate() {
            let object = crate::object::ObjectId::new(winner.commit, ObjectKind::Commit);
            if !holders.contains(&index)
                && source.info().kind != SourceKind::Upstream
                && source.has_object(object) == Some(true)
                && matches!(source.commit_is_complete(&winner.commit), Ok(true))
            {
                holders.push(index);
            }
        }
        holders.sort_by_key(|&index| preference(self.ranks[index], index));
        holders.dedup();
        let fetched = self.commits.get(&winner.commit)?;
        Some(Winner {
            commit: winner.commit,
            fetched: fetched.clone(),
            verdict: verdict.clone(),
            sources: holders,
        })
    }
}

/// What one read of a commit from a source gave, with its verification for each remote
/// that wanted it.
struct ReadOutcome {
    fetched: Fetched,
    /// The parsed commit, when some remote's policy accepted it.
    commit: Option<Arc<FetchedCommit>>,
    verifications: Vec<(PolicyKey, Result<Verdict, TrustError>)>,
}

/// Memory a read of `commit` from `source` plans for: its bytes, about three times that
/// while it is parsed, and its detached metadata twice (bytes and signatures).
fn read_cost(source: &dyn Source, commit: &Checksum) -> u64 {
    let size = source
        .metadata_size(ObjectId::new(*commit, ObjectKind::Commit))
        .unwrap_or(MAX_COMMIT_SIZE)
        .min(MAX_COMMIT_SIZE);
    let detached = source
        .metadata_size(ObjectId::new(*commit, ObjectKind::CommitMeta))
        .unwrap_or(MAX_DETACHED_METADATA_SIZE)
        .min(MAX_DETACHED_METADATA_SIZE);
    size.saturating_mul(4)
        .saturating_add(detached.saturating_mul(2))
}

/// Reads a commit from a source (whether its closure is complete there, its bytes checked
/// against its name and parsed, its detached metadata) and verifies it at once for each of
/// the `wanted` remotes' policies. The bytes and signatures are dropped before returning;
/// the parsed commit is kept only when some policy accepted it. A commit the source holds
/// only in part is read only when `in_part` (a ref installed in part wants it).
fn read_commit(
    source: &dyn Source,
    name: &str,
    commit: &Checksum,
    wanted: &[(&PolicyKey, &RemotePolicy)],
    in_part: bool,
    budget: &parallel::MemoryBudget,
) -> ReadOutcome {
    let only = |fetched: Fetched| ReadOutcome {
        fetched,
        commit: None,
        verifications: Vec::new(),
    };
    let failed = |error: FetchError, what: &str| {
        only(Fetched::Failed {
            kind: fetch_problem_kind(&error),
            reason: format!(
                "cannot read {what} of commit {}… from {name}: {}",
                commit.short(),
                Causes(&error)
            ),
        })
    };
    let partial = match source.commit_is_complete(commit) {
        Ok(true) => false,
        Ok(false) if in_part => true,
        Ok(false) => return only(Fetched::Partial),
        Err(error) => return failed(error, "the state"),
    };
    let _reservation = budget.reserve(read_cost(source, commit));
    let bytes = match source.fetch_metadata(ObjectKind::Commit, commit, &Interrupt::never()) {
        Ok(bytes) => bytes,
        Err(error) => return failed(error, "the object"),
    };
    let actual = crate::object::metadata_checksum(&bytes);
    if actual != *commit {
        return only(Fetched::Failed {
            kind: ProblemKind::Corrupt,
            reason: format!(
                "commit {}… on {name} is damaged (its bytes hash to {}…): use another source",
                commit.short(),
                actual.short()
            ),
        });
    }
    let detached_metadata = match source.fetch_commitmeta(commit, &Interrupt::never()) {
        Ok(meta) => meta,
        Err(FetchError::NotFound { .. }) => None,
        Err(error) => return failed(error, "the signatures"),
    };
    // Signatures are checked over the raw bytes before anything parses them: a commit no
    // remote vouches for costs its bytes and no more.
    let candidate = CommitCandidate {
        checksum: *commit,
        commit: &bytes,
        detached_metadata: detached_metadata.as_deref(),
        source: name,
    };
    let verifications: Vec<(PolicyKey, Result<Verdict, TrustError>)> = wanted
        .iter()
        .map(|(key, policy)| ((*key).clone(), policy.verify_commit(&candidate)))
        .collect();
    drop(detached_metadata);
    if !verifications.iter().any(|(_, result)| result.is_ok()) {
        return ReadOutcome {
            fetched: Fetched::Read { partial },
            commit: None,
            verifications,
        };
    }
    match Commit::parse(&bytes) {
        Ok(parsed) => ReadOutcome {
            fetched: Fetched::Read { partial },
            commit: Some(Arc::new(FetchedCommit {
                commit: parsed,
                size: bytes.len() as u64,
            })),
            verifications,
        },
        Err(error) => only(Fetched::Failed {
            kind: ProblemKind::Corrupt,
            reason: format!(
                "commit {}… on {name} is damaged ({}): use another source",
                commit.short(),
                Causes(&error)
            ),
        }),
    }
}
