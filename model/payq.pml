/*
 * payq.pml - a Promela model of payq's protocol, checked by SPIN (see README.md).
 *
 * The world: one partition of the commands topic, two workers, the group coordinator,
 * the committed offset, PostgreSQL (orders, payments, processed_commands = the dedup rows,
 * consumer_progress) with a failover that loses the last commit, the DLQ topic and, with
 * -DGATEWAY, the payment channel and the reconciler.
 *
 * Each step names the C function it stands for. The protocol is the one the worker
 * follows once the drift check seeks BACK when Kafka is ahead of the database, and once
 * gateway mode refuses to re-charge a key the channel no longer remembers.
 *
 * Switches (spin -D...; check.sh has the runs):
 *   GATEWAY          payment mode gateway (default: ledger)
 *   MAXF=n           fault budget: crashes, lost assignments, revokes, failovers, lost
 *                    channel answers, DLQ copies not persisted, keys past retention
 *   NO_CRASH NO_LOSE NO_REVOKE NO_FAILOVER NO_DLQFAIL NO_LOSTANSWER NO_EXPIRE
 *                    leave one kind of fault out
 *   NMSG=n           messages on the partition (default 6, all of them)
 *   OVERLAP          the pipelined loop of issue 18 (DESIGN18): while batch N's
 *                    transaction is in flight the worker polls, collects and decodes
 *                    batch N+1 (and produces its DLQ copy); N+1 is sent only after N's
 *                    COMMIT result arrived and N's offsets were stored. The lane
 *                    abstraction (README.md): another lane's commit, and the revoke of
 *                    another partition of this lane abandoning batch N, at any point.
 *   REACH_COMMITTED_UNSENT REACH_COLLECTED_UNSENT
 *                    reachability probes: assert that a crash never hits that window,
 *                    so that SPIN's trail shows it is reached (check.sh expects refuted)
 *   the mutants:     M_STORE_BEFORE_COMMIT M_SKIP_DEDUP M_DEDUP_AFTER_LOCK
 *                    M_TRUST_KAFKA_AHEAD M_RECHARGE_PAST_RETENTION M_AMBIGUOUS_KEY
 *                    M_DLQ_STORE_EARLY M_LOCK_SKIP_ANY (no order lock when the dedup
 *                    read found any command of the order, not all), and two for the progress checks:
 *                    M_STUCK_PAUSE M_LOOK_FOREVER; with OVERLAP: M_EARLY_SEND (batch
 *                    N+1 sent before N's COMMIT result arrived: its reads do not see N's
 *                    writes)
 *   what the issue-18 design leaves open (README.md, "Findings"), with OVERLAP:
 *                    D18_ABANDON_NO_SEEK   a lane abandoning its batch for a revoked
 *                                          partition does not seek back the partitions
 *                                          of that batch that stay assigned
 *   what today's code does where the model asks for more (see README.md, "Findings"):
 *                    TODAY_NO_RECHECK      no drift check after a database reconnect
 *                    TODAY_KEEP_INFLIGHT   a batch in flight across a re-assignment is
 *                                          applied as it is
 *                    TODAY_RESUME_EXPIRED  a worker resumes a charge past key retention
 */

#ifndef MAXF
#define MAXF 2
#endif
#ifndef NMSG
#define NMSG 6
#endif

#define NW 2   /* workers */
#define NIL 255
#define NCMD 4 /* command ids: 0 create, 1 pay, 2 second pay, 3 cancel */

/* The partition. Offset: 0 create(c0), 1 pay(c1), 2 malformed, 3 pay(c1) again (the
 * duplicate), 4 pay(c2) (a second pay of the same order), 5 cancel(c3). */
#define K_CREATE 1
#define K_PAY 2
#define K_BAD 3
#define K_CANCEL 4
#define BADOFF 2
#define KIND(i) ((i) == 0 -> K_CREATE : ((i) == BADOFF -> K_BAD : ((i) == 5 -> K_CANCEL : K_PAY)))
#define CMD(i) ((i) == 0 -> 0 : ((i) == 4 -> 2 : ((i) == 5 -> 3 : 1)))
#define BIT(c) (1 << (c))

/* The idempotency key of a payment at the channel: (order_id, command_id), which the
 * real code writes as order_id ':' command_id (apply.c ins_payments_gw). */
#ifdef M_AMBIGUOUS_KEY
#define KEY(c) ((c) == 2 -> 1 : (c)) /* two commands of one order share a key */
#else
#define KEY(c) (c)
#endif

/* orders.status */
#define ST_NONE 0
#define ST_UNPAID 1
#define ST_PAID 2
#define ST_CANC 3
/* processed_commands.outcome (0: no dedup row) */
#define O_NONE 0
#define O_APPLIED 1
#define O_EXISTS 2    /* rejected_order_exists */
#define O_UNKNOWN 3   /* rejected_unknown_order */
#define O_PAID 4      /* rejected_already_paid */
#define O_CANC 5      /* rejected_order_cancelled */
#define O_PENDING 6
#define O_DECLINED 7  /* rejected_declined */
#define O_INPROG 8    /* rejected_payment_in_progress */
/* payments.status (0: no row) */
#define P_NONE 0
#define P_PENDING 1
#define P_UNKNOWN 2
#define P_SUCC 3
#define P_FAILED 4
/* the channel's idempotency record, and an answer */
#define R_NONE 0
#define R_SUCC 1
#define R_DECL 2
#define R_UNKNOWN 3 /* no clear answer (lost, timeout, not sent) */

/* ---- PostgreSQL ---- */
typedef DB {
	byte st;        /* the one order */
	byte paidby;    /* orders.paid_command_id */
	byte dd[NCMD];  /* processed_commands: outcome per (order_id, command_id) */
	byte pay[NCMD]; /* payments per pay command */
	byte prog       /* consumer_progress.next_offset (the row exists from the start) */
};
DB db;
DB snap;        /* the database as it was before the last commit (the failover's loss) */
bit snapok;     /* there is a last commit to lose */
byte dbep;      /* incremented by a failover: every connection breaks */
byte lockh = NIL; /* the worker holding the order's row lock (SELECT ... FOR UPDATE) */
bit failed_over;

/* ---- Kafka ---- */
byte kc;            /* the group's committed offset */
byte gen;           /* the group generation */
byte owner = NIL;   /* who the coordinator gave the partition to */
bit dlq_rec;        /* a PERSISTED copy of the malformed message in the DLQ topic */

/* ---- the workers, as the coordinator and the broker see them ---- */
bit up[NW];
bit kill[NW];      /* a crash, at any step */
bit asg[NW];       /* an assignment waiting for the next poll */
bit rev[NW];       /* a revoke waiting for the next poll */
bit lost[NW];      /* the assignment was lost (session timeout): a zombie until it polls */
bit owns[NW];      /* the worker's own view: the partition is in its assignment */
byte wgen[NW];     /* the generation the worker's commits carry */
byte pos[NW];      /* its fetch position */
byte stored[NW];   /* rd_kafka_offsets_store()d offset, NIL when none */
bit dirty[NW];     /* commit_dirty */
bit paused[NW];    /* worker_set_paused() */
byte ep[NW];       /* the database epoch of its connection */
bit dlq_q[NW];     /* a DLQ copy produced, its delivery report not yet served */
bit dlq_fail[NW];  /* the delivery report said: not PERSISTED */

byte faults;

/* ---- the payment channel (gateway mode) ---- */
byte rec[NCMD];     /* idempotency record per key */
byte rec_cmd[NCMD]; /* ghost: the command whose request created the record */
bit expired[NCMD];  /* the key is past the channel's retention; its record is gone */
bit moved[NCMD];    /* ghost: money moved for this command */
byte moved_total;   /* ghost: charges that moved money for the order */
bit unres[NCMD];    /* the reconciler raised unresolved_payment (left for a person) */

#define LIVE(c) (db.pay[c] == P_PENDING || db.pay[c] == P_UNKNOWN || db.pay[c] == P_SUCC)
#define INPROG(c) (db.pay[c] == P_PENDING || db.pay[c] == P_UNKNOWN)

/* ---- properties checked at every step that can break them ---- */

/* offsets: the committed offset is never ahead of consumer_progress, except after a
 * failover (the drift check then rewinds before any new apply, see apply_commit). */
#define CHECK_OFFSETS() assert(kc <= db.prog || failed_over)
/* never twice: at most one live payment per order (the unique partial index on payments
 * refuses a second one whatever the worker does), one charge per order at the channel. */
#define CHECK_ONCE() \
	assert((LIVE(1) + LIVE(2)) <= 1); \
	assert(moved_total <= 1)

inline db_copy(to, from) {
	to.st = from.st; to.paidby = from.paidby; to.prog = from.prog;
	to.dd[0] = from.dd[0]; to.dd[1] = from.dd[1]; to.dd[2] = from.dd[2]; to.dd[3] = from.dd[3];
	to.pay[0] = from.pay[0]; to.pay[1] = from.pay[1]; to.pay[2] = from.pay[2]; to.pay[3] = from.pay[3]
}

/* A successful COMMIT: keep what it overwrites, for the failover to restore. */
inline db_begin_commit() {
	db_copy(snap, db);
	snapok = 1
}

/* The channel answers POST /charges with Idempotency-Key KEY(c) (gateway.c run(),
 * classify()). A key it remembers is answered from its record; a new key is charged:
 * the money moves, or the charge is declined. The answer may be lost on the way back. */
inline channel_post(c, r) {
	if
	:: rec[KEY(c)] != R_NONE
	:: rec[KEY(c)] == R_NONE ->
		if
		:: rec[KEY(c)] = R_SUCC; moved[c] = 1; moved_total++
		:: rec[KEY(c)] = R_DECL
		fi;
		rec_cmd[KEY(c)] = c
	fi;
	r = rec[KEY(c)];
	CHECK_ONCE();
	/* classify() checks the answer against the payment (key, amount, currency): with
	 * equal amounts that cannot tell two commands apart; only the key can. */
	assert(rec_cmd[KEY(c)] == c);
#ifndef NO_LOSTANSWER
	if
	:: faults < MAXF -> faults++; r = R_UNKNOWN /* the answer is lost */
	:: skip
	fi
#endif
}

/* The settle statement for one payment (apply.c "settle"): only a payment still pending
 * or unknown moves; the order and the dedup row's outcome follow it. */
inline settle_one(c, r) {
	if
	:: INPROG(c) ->
		if
		:: r == R_SUCC ->
			/* The outcome table (cancel refused while a payment is in progress) makes
			 * a succeeded payment of an order that is not unpaid impossible. */
			assert(db.st == ST_UNPAID);
			db.pay[c] = P_SUCC; db.st = ST_PAID; db.paidby = c; db.dd[c] = O_APPLIED
		:: r == R_DECL -> db.pay[c] = P_FAILED; db.dd[c] = O_DECLINED
		:: else -> db.pay[c] = P_UNKNOWN; db.dd[c] = O_PENDING
		fi
	:: else
	fi
}

/* A batch in hand that the new position does not continue is dropped, pause and all,
 * and fetched again from that position. Applied as it is, it could write
 * consumer_progress past commands a failover lost, or store an offset behind the one the
 * drift check stored. A batch in flight across a re-assignment is always dropped. */
inline drop_if_behind(always) {
	if
	:: to != 0 && (always || pos[me] < to) -> dropped = 1
	:: else
	fi
}

/* Collected-but-unsent messages (batch N+1, OVERLAP) of a partition that is revoked,
 * lost or assigned again are dropped, never stored: they came from the old position. */
inline drop_next() {
	nfrom = 0; nto = 0;
#ifdef M_EARLY_SEND
	nearly = 0; nrdd = 0; nrpend = 0; nrst = 0;
#endif
	skip
}

/* rebalance.c drift_check(), run by worker_rebalance_cb() on assign. The database is the truth. */
inline drift_check() {
	ep[me] = dbep; /* payq_apply_connect() */
	if
	:: kc < db.prog ->
		/* Kafka behind: seek forward, and store the database's offset */
		pos[me] = db.prog; stored[me] = db.prog; dirty[me] = 1
	:: kc > db.prog ->
#ifdef M_TRUST_KAFKA_AHEAD
		pos[me] = kc
#else
		pos[me] = db.prog /* Kafka ahead (a failover lost commits): seek back, re-apply */
#endif
	:: kc == db.prog -> pos[me] = kc
	fi;
	owns[me] = 1; asg[me] = 0;
#ifndef TODAY_KEEP_INFLIGHT
	drop_if_behind(1)
#else
	skip /* today: a batch in flight across the re-assignment is applied as it is */
#endif
}

/* worker_rebalance_cb(), served inside rd_kafka_consumer_poll() by collect() or worker_tick(). */
inline rebalance() {
	if
	:: lost[me] ->
		/* REVOKE with rd_kafka_assignment_lost(): drop_partitions(), no commit */
		owns[me] = 0; lost[me] = 0; stored[me] = NIL; dirty[me] = 0;
		drop_next()
	:: rev[me] ->
		/* REVOKE: commit what is stored (rd_kafka_commit), then unassign */
		if
		:: dirty[me] && stored[me] != NIL && wgen[me] == gen -> kc = stored[me]; CHECK_OFFSETS()
		:: else
		fi;
		owns[me] = 0; rev[me] = 0; stored[me] = NIL; dirty[me] = 0;
		drop_next();
		if
		:: owner == me -> owner = NIL
		:: else
		fi
	:: asg[me] -> drift_check(); drop_next()
	fi
}

/* After a failover broke the connection, payq_apply_connect() reconnects. The drift
 * rule must hold here too, or the commits the failover lost are never applied again:
 * seek back to consumer_progress and drop the batch in hand (and its pause). */
inline reconnect() {
	ep[me] = dbep;
#ifndef TODAY_NO_RECHECK
	if
	:: db.prog < pos[me] ->
#ifndef M_TRUST_KAFKA_AHEAD
		pos[me] = db.prog
#else
		skip
#endif
	:: else
	fi;
	drop_if_behind(0);
	/* batch N+1, collected past the new position, is dropped too */
	if
	:: nto != 0 && pos[me] < nto -> drop_next()
	:: else
	fi
#endif
}

/* store_offsets() then worker_commit(): the store fails for a partition not in the worker's
 * assignment (__STATE); a zombie's commit carries an old generation and is refused. */
inline store_and_commit(next) {
	atomic {
		paused[me] = 0;
		if
		:: owns[me] -> stored[me] = next; dirty[me] = 1
		:: else
		fi;
		if
		:: dirty[me] && stored[me] != NIL && wgen[me] == gen ->
			kc = stored[me]; dirty[me] = 0; CHECK_OFFSETS()
		:: else
		fi
	}
}

/* read_dedup: every dedup row of the batch's order, in the statement's snapshot */
inline read_dedup() {
#ifndef M_SKIP_DEDUP
	rdd = (db.dd[0] != 0) | (db.dd[1] != 0) << 1 | (db.dd[2] != 0) << 2 | (db.dd[3] != 0) << 3;
	rpend = (db.dd[1] == O_PENDING) << 1 | (db.dd[2] == O_PENDING) << 2
#else
	rdd = 0; rpend = 0 /* the broken build skips it */
#endif
}

/* Whether the dedup read found the batch's commands [from, to) (1 or 2 messages; the
 * malformed one has no command): every one of them, or any. */
#define FOUND(i) (KIND(i) != K_BAD && (rdd & BIT(CMD(i))))
#define ALL_FOUND() ((KIND(from) == K_BAD || FOUND(from)) && \
		     (to == from + 1 || KIND(from + 1) == K_BAD || FOUND(from + 1)))
#define ANY_FOUND() (FOUND(from) || (to == from + 2 && FOUND(from + 1)))

/* lock_orders(_gw): the statement's snapshot decides whether the order exists. A row that
 * exists is locked, waiting for its holder if need be, and read at its latest version
 * (with, in gateway mode, whether a payment is pending or unknown). An order another
 * transaction inserts meanwhile is not in the snapshot: no row, no lock. */
inline lock_read() {
	lockh = me; rst = db.st;
#ifdef GATEWAY
	rinprog = INPROG(1) || INPROG(2);
#endif
	osnap = 0
}
inline lock_start() {
	if
	:: db.st == ST_NONE -> rst = ST_NONE
	:: db.st != ST_NONE && lockh == NIL -> lock_read()
	:: db.st != ST_NONE && lockh != NIL -> osnap = 1 /* waits */
	fi
}
inline lock_wait() {
	if
	:: osnap -> atomic { lockh == NIL -> lock_read() }
	:: else
	fi
}
inline lock_orders() {
	atomic { lock_start() }
	lock_wait()
}

/* collect() while batch N is in flight (OVERLAP): batch N+1, 1 or 2 messages from the
 * fetch position, decoded (decode_batch()); its malformed message's DLQ copy is produced
 * now (payq_dlq_deliver() -> produce_one()); its PERSISTED report is awaited before it is
 * sent, by the same wait as any batch. */
inline collect_next() {
	nfrom = pos[me];
	if
	:: nto = nfrom + 1
	:: nfrom + 1 < NMSG -> nto = nfrom + 2
	fi;
	pos[me] = nto;
	if
	:: nfrom <= BADOFF && BADOFF < nto -> dlq_q[me] = 1
	:: else
	fi;
#ifdef M_EARLY_SEND
	/* the broken build: lane_send() of N+1 now, behind N (on a second connection, or
	 * pipelined behind a COMMIT that may fail): its dedup read and its order read
	 * run before N's writes are visible */
	nrdd = (db.dd[0] != 0) | (db.dd[1] != 0) << 1 | (db.dd[2] != 0) << 2 | (db.dd[3] != 0) << 3;
	nrpend = (db.dd[1] == O_PENDING) << 1 | (db.dd[2] == O_PENDING) << 2;
	nrst = db.st; nearly = 1;
#endif
	skip
}

/* The lane's batch N is abandoned because ANOTHER partition of the same lane is revoked
 * (worker_rebalance_cb() -> lane_abandon(), worker/lane.c, planned): its result is no
 * longer awaited; the connection is reset, so its transaction rolls back, unless its
 * COMMIT was already queued and runs first (see write_state()). This partition stays assigned: its messages in batch N are fetched
 * again from N's first offset (rd_kafka_seek), and its batch N+1 is dropped. */
inline abandon_lane() {
	dropped = 1;
#ifndef D18_ABANDON_NO_SEEK
	pos[me] = from;
#endif
	drop_next()
}

/* The main loop while the lane's batch N is in flight, between lane_send() and
 * lane_finish() (worker/lane.c, planned names), with OVERLAP: poll(2) on the PostgreSQL
 * socket and the consumer queue, then rd_kafka_consumer_poll(), which serves the
 * rebalance callback (a revoke or lost assignment here abandons N: its store will fail,
 * its late COMMIT is absorbed by the dedup rows; a revoke not served here is served
 * after N finished, which is the "finish" choice), collects batch N+1, and lets another
 * lane's store_offsets() + worker_commit() commit this partition's stored offset too. */
inline overlap_poll() {
#ifdef OVERLAP
	do
	:: atomic { (lost[me] || rev[me] || asg[me]) -> rebalance() }
	:: atomic {
		nto == 0 && owns[me] && !lost[me] && !paused[me] && pos[me] < NMSG && !dropped ->
		collect_next()
	   }
	:: atomic {
		/* another lane's worker_commit() commits every stored offset */
		dirty[me] && stored[me] != NIL && wgen[me] == gen && owns[me] ->
		kc = stored[me]; dirty[me] = 0; CHECK_OFFSETS()
	   }
#ifndef NO_REVOKE
	:: atomic { faults < MAXF && owns[me] && !lost[me] && !dropped -> faults++; abandon_lane() }
#endif
	:: break
	od;
#endif
	skip
}

proctype Worker(byte me)
{
	byte from, to, i, c, rst, st, paidby, rdd, rpend, chg, newpay, resumed;
	byte wdd[NCMD];
	byte res[NCMD];
	bit osnap, rinprog, inprog, ochg, abort, dropped;
	/* OVERLAP: batch N+1, collected while batch N [from, to) is in flight; committed:
	 * batch N's COMMIT ran (its result may still be on its way) */
	byte nfrom, nto, tep;
	bit committed;
#ifdef M_EARLY_SEND
	byte nrdd, nrpend, nrst;
	bit nearly, early;
#endif

restart:
	atomic {
		/* main(): a fresh process; payq_apply_connect(); subscribe() joins the group,
		 * which rebalances a partition the coordinator still gave this member */
		up[me] = 1; pos[me] = 0; stored[me] = NIL; ep[me] = dbep;
		if
		:: owner == me -> owner = NIL
		:: else
		fi
	}
	do
	:: atomic { (lost[me] || rev[me] || asg[me]) -> rebalance() }
	:: atomic {
		/* collect(): a batch of 1 or 2 messages from the fetch position. A zombie
		 * finishes the batch in hand; the next poll serves its lost assignment first
		 * (more batches of a zombie would repeat the same race). */
		owns[me] && !lost[me] && (nto != 0 || (!paused[me] && pos[me] < NMSG)) ->
		if
		:: nto != 0 ->
			/* OVERLAP: batch N+1, collected while N was in flight, goes to the lane
			 * now that N's COMMIT result arrived and its offsets are stored */
			from = nfrom; to = nto; nfrom = 0; nto = 0;
#ifdef M_EARLY_SEND
			early = nearly; nearly = 0;
#endif
			skip
		:: else ->
			from = pos[me];
			if
			:: to = from + 1
			:: from + 1 < NMSG -> to = from + 2
			fi;
			pos[me] = to;
			/* ---- worker_process_batch() ---- */
			/* decode_batch(), then payq_dlq_deliver(): a malformed message is copied
			 * to the DLQ (produce_one()) and nothing goes on before its delivery
			 * report says PERSISTED. */
			if
			:: from <= BADOFF && BADOFF < to -> dlq_q[me] = 1
			:: else
			fi
		fi;
		dropped = 0
	   }
		if
		:: from <= BADOFF && BADOFF < to ->
#ifndef M_DLQ_STORE_EARLY
			do
			:: dlq_q[me] == 0 && !dlq_fail[me] -> break /* dr_msg_cb: PERSISTED */
			:: dlq_fail[me] -> dlq_fail[me] = 0; dlq_q[me] = 1 /* not PERSISTED: again */
			:: atomic {
				/* a slow report: worker_tick() pauses and polls; the rebalance callback
				 * runs, and keeps the in-flight batch (drop_partitions) */
				(lost[me] || rev[me] || asg[me]) -> paused[me] = 1; rebalance()
			   }
			od
#else
			skip
#endif
		:: else
		fi;
#ifdef M_STORE_BEFORE_COMMIT
		store_and_commit(to);
#endif
		/* ---- apply_range() -> payq_apply_batch(): one transaction, retried ---- */
txn:
		/* BEGIN (payq_apply_connect() first, when a failover broke the connection);
		 * then read_state(): the dedup read, then the FOR UPDATE lock (apply.c, top) */
		atomic {
			if
			:: ep[me] != dbep -> reconnect()
			:: else
			fi;
			if
			:: dropped -> goto abandon
			:: else
			fi;
			/* the transaction runs on this connection: a drift check that reconnects
			 * meanwhile (OVERLAP) does not carry it over */
			tep = ep[me];
#ifdef M_EARLY_SEND
			if
			:: early -> /* N+1's reads ran while N was in flight */
				early = 0; rdd = nrdd; rpend = nrpend; rst = nrst;
				nrdd = 0; nrpend = 0; nrst = 0;
				goto sent
			:: else
			fi;
#endif
#ifndef M_DEDUP_AFTER_LOCK
			/* lane_send() (worker/lane.c, planned): BEGIN and the reads, pipelined */
			read_dedup()
		}
		/* The fast path after a batch of duplicates only (apply_async.c) sends the
		 * dedup read alone, and locks only the orders with a command it did not find:
		 * a duplicate reads and writes nothing of its order. Any batch may still lock
		 * them all, as every other batch does. */
		if
#ifndef M_LOCK_SKIP_ANY
		:: ALL_FOUND() -> rst = ST_NONE; rinprog = 0
#else
		/* the broken build: no lock for an order with any command found */
		:: ANY_FOUND() -> rst = ST_NONE; rinprog = 0
#endif
		:: lock_orders()
		fi;
#else
			/* the broken build: the lock first, the dedup read after it */
			lock_start()
		}
		lock_wait();
		atomic { read_dedup() }
#endif
#ifdef OVERLAP
sent:
		/* READS_SENT: the main loop polls while the results are on their way */
		overlap_poll();
#endif
		/* evaluate(): the outcome table, in offset order (decide(), check_unpaid()) */
		d_step {
			st = rst; inprog = rinprog; paidby = NIL; ochg = 0; chg = 0; newpay = 0;
			resumed = 0; wdd[0] = 0; wdd[1] = 0; wdd[2] = 0; wdd[3] = 0;
			i = from;
			do
			:: i < to && KIND(i) == K_BAD -> i++
			:: i < to && KIND(i) != K_BAD ->
				c = CMD(i);
				if
				:: (rdd & BIT(c)) || wdd[c] != O_NONE ->
					/* a duplicate; a pending pay redelivered resumes its charge,
					 * with the same key, once per batch */
#ifdef GATEWAY
					if
					:: (rdd & BIT(c)) && (rpend & BIT(c)) && !(resumed & BIT(c)) &&
					   KIND(i) == K_PAY -> chg = chg | BIT(c); resumed = resumed | BIT(c)
					:: else
					fi
#else
					skip
#endif
				:: else ->
					if
					:: KIND(i) == K_CREATE && st != ST_NONE -> wdd[c] = O_EXISTS
					:: KIND(i) == K_CREATE && st == ST_NONE ->
						st = ST_UNPAID; ochg = 1; wdd[c] = O_APPLIED
					:: KIND(i) != K_CREATE && st == ST_NONE -> wdd[c] = O_UNKNOWN
					:: KIND(i) != K_CREATE && st == ST_PAID -> wdd[c] = O_PAID
					:: KIND(i) != K_CREATE && st == ST_CANC -> wdd[c] = O_CANC
					:: KIND(i) != K_CREATE && st == ST_UNPAID && inprog -> wdd[c] = O_INPROG
					:: KIND(i) == K_PAY && st == ST_UNPAID && !inprog ->
						newpay = newpay | BIT(c);
#ifdef GATEWAY
						/* pending; charged after COMMIT */
						inprog = 1; wdd[c] = O_PENDING; chg = chg | BIT(c)
#else
						st = ST_PAID; paidby = c; ochg = 1; wdd[c] = O_APPLIED
#endif
					:: KIND(i) == K_CANCEL && st == ST_UNPAID && !inprog ->
						st = ST_CANC; ochg = 1; wdd[c] = O_APPLIED
					fi
				fi;
				i++
			:: else -> break
			od;
			i = 0; c = 0
		}
		/* write_state(): the writes and COMMIT, all or nothing */
		atomic {
			if
			:: tep != dbep -> abort = 1 /* the failover broke the connection */
#ifdef OVERLAP
			/* abandoned (lane_abandon() resets the connection, or the re-assignment
			 * dropped it): rolled back, or the COMMIT already queued ran first */
			:: dropped -> abort = 1
#endif
			:: tep == dbep ->
				/* 23505 on ins_orders or ins_processed, or the payments index */
				abort = (ochg && rst == ST_NONE && db.st != ST_NONE) ||
#ifndef M_SKIP_DEDUP
					(wdd[0] && db.dd[0]) || (wdd[1] && db.dd[1]) ||
					(wdd[2] && db.dd[2]) || (wdd[3] && db.dd[3]) ||
#endif
					(newpay && (LIVE(1) || LIVE(2)))
			fi;
			if
			:: !abort ->
				/* offsets: no apply past what the database holds (no gap) */
				assert(from <= db.prog);
				db_begin_commit();
				if
				:: ochg -> db.st = st;
					if
					:: paidby != NIL -> db.paidby = paidby
					:: else
					fi
				:: else
				fi;
				/* ins_processed (the broken build: ON CONFLICT DO UPDATE) */
				if :: wdd[0] -> db.dd[0] = wdd[0] :: else fi;
				if :: wdd[1] -> db.dd[1] = wdd[1] :: else fi;
				if :: wdd[2] -> db.dd[2] = wdd[2] :: else fi;
				if :: wdd[3] -> db.dd[3] = wdd[3] :: else fi;
#ifdef GATEWAY
				if :: newpay & BIT(1) -> db.pay[1] = P_PENDING :: else fi;
				if :: newpay & BIT(2) -> db.pay[2] = P_PENDING :: else fi;
#else
				if :: newpay & BIT(1) -> db.pay[1] = P_SUCC :: else fi;
				if :: newpay & BIT(2) -> db.pay[2] = P_SUCC :: else fi;
#endif
				/* upsert_progress, GREATEST; gateway mode moves it in the settle */
				if
				:: !chg && db.prog < to -> db.prog = to
				:: else
				fi;
				CHECK_ONCE(); CHECK_OFFSETS();
				committed = 1
			:: else
			fi;
			if
			:: lockh == me -> lockh = NIL
			:: else
			fi
		}
		if
		:: abort -> abort = 0;
#ifdef OVERLAP
			/* the lane falls back to the synchronous path: rollback(); db_retry_wait()
			 * pauses the lane's own partitions and polls through worker_tick(), where
			 * the rebalance callback runs */
			do
			:: atomic { (lost[me] || rev[me] || asg[me]) -> paused[me] = 1; rebalance() }
			:: break
			od;
#endif
			goto txn /* rollback(); db_retry_wait() */
		:: else
		fi;
#ifdef OVERLAP
		/* WRITES_SENT, COMMIT ran: its result is on its way (crash point
		 * after_commit_before_next_send when N+1 is collected) */
		overlap_poll();
		if
		:: dropped && !chg -> goto abandon /* abandoned: nothing stored */
		:: else
		fi;
#endif
#ifdef GATEWAY
		/* ---- worker_charge_and_settle() (charge.c) ---- */
		if
		:: chg ->
			/* payq_gateway_charge(): each charge with its key, concurrently */
			if
			:: chg & BIT(1) ->
				atomic {
#ifndef TODAY_RESUME_EXPIRED
					if
					:: expired[KEY(1)] -> res[1] = R_UNKNOWN /* not sent */
					:: else -> channel_post(1, res[1])
					fi
#else
					channel_post(1, res[1])
#endif
				}
			:: else
			fi;
			if
			:: chg & BIT(2) ->
				atomic {
#ifndef TODAY_RESUME_EXPIRED
					if
					:: expired[KEY(2)] -> res[2] = R_UNKNOWN
					:: else -> channel_post(2, res[2])
					fi
#else
					channel_post(2, res[2])
#endif
				}
			:: else
			fi;
settle:
			/* payq_apply_settle(): the answers and consumer_progress, retried */
			atomic {
				lockh == NIL;
				if
				:: ep[me] != dbep -> abort = 1
				:: else ->
					assert(from <= db.prog);
					db_begin_commit();
					if :: chg & BIT(1) -> settle_one(1, res[1]) :: else fi;
					if :: chg & BIT(2) -> settle_one(2, res[2]) :: else fi;
					if
					:: db.prog < to -> db.prog = to
					:: else
					fi;
					CHECK_ONCE(); CHECK_OFFSETS()
				fi
			}
			if
			:: abort -> atomic { abort = 0; reconnect() };
				if
				:: dropped -> goto abandon
				:: else -> goto settle
				fi
			:: else
			fi
		:: else
		fi;
#endif
		/* lane_finish() (worker/lane.c, planned): the COMMIT result arrived; then
		 * worker_set_paused(false); store_offsets() (worker/batch.c); worker_commit() */
		store_and_commit(to);
abandon:
		atomic {
			/* worker_release_batch(); a dropped batch is fetched again from pos */
#ifndef M_STUCK_PAUSE
			if
			:: dropped -> paused[me] = 0
			:: else
			fi;
#endif
			from = 0; to = 0; rst = 0; st = 0; paidby = 0; rdd = 0; rpend = 0; chg = 0;
			newpay = 0; resumed = 0; osnap = 0; rinprog = 0; inprog = 0; ochg = 0;
			dropped = 0; committed = 0; tep = 0; wdd[0] = 0; wdd[1] = 0; wdd[2] = 0; wdd[3] = 0;
			res[0] = 0; res[1] = 0; res[2] = 0; res[3] = 0
		}
	:: atomic {
		/* the idle loop: worker_commit(w, false) flushes a pending commit */
		dirty[me] && stored[me] != NIL && wgen[me] == gen && owns[me] ->
		kc = stored[me]; dirty[me] = 0; CHECK_OFFSETS()
	   }
	:: atomic {
		/* the idle loop's database ping reconnects after a failover */
		owns[me] && ep[me] != dbep -> reconnect(); dropped = 0
	   }
	od unless {
		kill[me] ->
		/* a crash, at any step: the process, its connection (and the lock), the
		 * producer's queue and everything stored but not committed are gone */
		d_step {
#ifdef REACH_COMMITTED_UNSENT
			/* crash point after_commit_before_next_send: N committed (stored or not),
			 * N+1 collected, not sent */
			assert(!(nto != 0 && (committed || to == 0)));
#endif
#ifdef REACH_COLLECTED_UNSENT
			/* crash point collected_unsent: N in flight, N+1 collected with its
			 * malformed message's DLQ copy PERSISTED */
			assert(!(nto != 0 && to != 0 && !committed && nfrom <= BADOFF && BADOFF < nto &&
				 dlq_rec));
#endif
			up[me] = 0; kill[me] = 0; asg[me] = 0; rev[me] = 0; lost[me] = 0; owns[me] = 0;
			wgen[me] = 0; pos[me] = 0; stored[me] = NIL; dirty[me] = 0; paused[me] = 0;
			dlq_q[me] = 0; dlq_fail[me] = 0; ep[me] = 0;
			if
			:: lockh == me -> lockh = NIL
			:: else
			fi;
			from = 0; to = 0; i = 0; c = 0; rst = 0; st = 0; paidby = 0; rdd = 0;
			rpend = 0; chg = 0; newpay = 0; resumed = 0; osnap = 0; rinprog = 0;
			inprog = 0; ochg = 0; abort = 0; dropped = 0; committed = 0; tep = 0;
			drop_next();
#ifdef M_EARLY_SEND
			early = 0;
#endif
			wdd[0] = 0; wdd[1] = 0; wdd[2] = 0; wdd[3] = 0;
			res[0] = 0; res[1] = 0; res[2] = 0; res[3] = 0
		}
	};
	goto restart
}

/* The group coordinator and the DLQ topic's broker. */
proctype Kafka()
{
end:
	do
	:: atomic {
		/* a crashed member's session times out */
		owner != NIL && !up[owner] -> owner = NIL
	   }
	:: atomic {
		/* a rebalance assigns the partition, in a new generation */
		owner == NIL && up[0] && !kill[0] && !owns[0] && !asg[0] && !lost[0] ->
		gen++; owner = 0; asg[0] = 1; wgen[0] = gen
	   }
	:: atomic {
		owner == NIL && up[1] && !kill[1] && !owns[1] && !asg[1] && !lost[1] ->
		gen++; owner = 1; asg[1] = 1; wgen[1] = gen
	   }
	/* delivery reports of DLQ copies */
	:: atomic { dlq_q[0] -> dlq_q[0] = 0; dlq_rec = 1 }
	:: atomic { dlq_q[1] -> dlq_q[1] = 0; dlq_rec = 1 }
#ifndef NO_DLQFAIL
	:: atomic { dlq_q[0] && faults < MAXF -> dlq_q[0] = 0; dlq_fail[0] = 1; faults++ }
	:: atomic { dlq_q[1] && faults < MAXF -> dlq_q[1] = 0; dlq_fail[1] = 1; faults++ }
#endif
	od
}

/* Faults, each paid from one budget of MAXF. */
proctype Faults()
{
end:
	do
#ifndef NO_CRASH
	:: atomic { faults < MAXF && up[0] && !kill[0] -> kill[0] = 1; faults++ } /* crash */
	:: atomic { faults < MAXF && up[1] && !kill[1] -> kill[1] = 1; faults++ }
#endif
#ifndef NO_LOSE
	:: atomic {
		/* a session timeout: the assignment is lost; the worker is a zombie until it
		 * polls, and its commits carry an old generation */
		faults < MAXF && owner != NIL && owns[owner] ->
		lost[owner] = 1; rev[owner] = 0; owner = NIL; gen++; faults++
	   }
#endif
#ifndef NO_REVOKE
	:: atomic {
		/* a cooperative rebalance revokes the partition */
		faults < MAXF && owner != NIL && owns[owner] && !rev[owner] ->
		rev[owner] = 1; faults++
	   }
#endif
#ifndef NO_FAILOVER
	:: atomic {
		/* a PostgreSQL failover loses the last commit; every connection breaks. It
		 * loses only recent commits: none of a key already past retention. */
		faults < MAXF && snapok && !expired[1] && !expired[2] ->
		db_copy(db, snap); snapok = 0; dbep++; lockh = NIL; failed_over = 1; faults++
	   }
#endif
#if defined(GATEWAY) && !defined(NO_EXPIRE)
	/* time passes a key's retention: the channel forgets its record */
	:: atomic { faults < MAXF && rec[1] != R_NONE -> rec[1] = R_NONE; expired[1] = 1; faults++ }
	:: atomic { faults < MAXF && rec[2] != R_NONE -> rec[2] = R_NONE; expired[2] = 1; faults++ }
#endif
	od
}

#ifdef GATEWAY
/* reconcile.c page(): the payments still pending or unknown, asked about by key. */
proctype Reconciler()
{
	byte c, r;
end:
	if
#ifndef M_LOOK_FOREVER
	:: atomic { INPROG(1) && !unres[1] -> c = 1 }
	:: atomic { INPROG(2) && !unres[2] -> c = 2 }
#else
	/* the broken build looks at an unresolved payment again and again */
	:: atomic { INPROG(1) -> c = 1 }
	:: atomic { INPROG(2) -> c = 2 }
#endif
	fi;
	/* payq_gateway_query(): GET /charges/KEY, then settle() -> payq_apply_settle() on
	 * its own connection. One step: what could come between (another settle, a
	 * failover) commutes with it, since a settle moves only a payment still in
	 * progress and the channel's answer for a key does not change. */
	atomic {
		lockh == NIL;
		if
		:: rec[KEY(c)] != R_NONE ->
			r = rec[KEY(c)];
			assert(rec_cmd[KEY(c)] == c);
#ifndef NO_LOSTANSWER
			if
			:: faults < MAXF -> faults++; r = R_UNKNOWN /* the answer is lost */
			:: skip
			fi
#endif
		:: rec[KEY(c)] == R_NONE && !expired[KEY(c)] ->
			/* 404 within retention: the channel never saw the key; charge again,
			 * with the same key */
			channel_post(c, r)
		:: rec[KEY(c)] == R_NONE && expired[KEY(c)] ->
#ifdef M_RECHARGE_PAST_RETENTION
			channel_post(c, r)
#else
			/* 404 past retention: the channel may have charged and forgotten; raise
			 * unresolved_payment and leave it to a person (look_again()) */
			unres[c] = 1; r = R_UNKNOWN
#endif
		fi;
		if
		:: r != R_UNKNOWN -> db_begin_commit(); settle_one(c, r); CHECK_ONCE()
		:: else
		fi;
		c = 0; r = 0
	}
	goto end
}
#endif

/* Once nothing can move any more, the system is quiet: check what it left. */
proctype Quiet()
{
	timeout ->
	d_step {
		/* drained: no stuck pause, no partition left behind */
		assert(db.prog == NMSG && kc == NMSG);
		assert(lockh == NIL);
		/* never lost: the malformed one has its DLQ record, the valid ones their rows */
		assert(NMSG <= BADOFF || dlq_rec);
		assert(db.dd[0] != O_NONE);
		assert(NMSG <= 1 || db.dd[1] != O_NONE);
		assert(NMSG <= 4 || db.dd[2] != O_NONE);
		assert(NMSG <= 5 || db.dd[3] != O_NONE);
		assert(db.dd[0] == O_APPLIED);
#ifndef GATEWAY
		/* the outcomes of applying the partition once, in order */
		assert(NMSG <= 1 || (db.dd[1] == O_APPLIED && db.st == ST_PAID && db.paidby == 1 &&
				     db.pay[1] == P_SUCC && db.pay[2] == P_NONE));
		assert(NMSG <= 4 || db.dd[2] == O_PAID);
		assert(NMSG <= 5 || db.dd[3] == O_PAID);
#else
		/* every payment settled, or raised for a person; money moved is recorded */
		assert(!INPROG(1) || unres[1]);
		assert(!INPROG(2) || unres[2]);
		assert(!moved[1] || db.pay[1] == P_SUCC || unres[1]);
		assert(!moved[2] || db.pay[2] == P_SUCC || unres[2]);
		assert(db.pay[1] != P_SUCC || (moved[1] && db.st == ST_PAID && db.paidby == 1));
		assert(db.pay[2] != P_SUCC || (moved[2] && db.st == ST_PAID && db.paidby == 2));
		assert(db.st != ST_PAID || db.pay[db.paidby] == P_SUCC);
		assert(NMSG <= 5 || db.dd[3] != O_APPLIED || db.st == ST_CANC);
#endif
	}
progress_quiet:
	do
	:: timeout /* stays quiet: for the non-progress search */
	od
}

init {
	atomic {
		db.paidby = NIL;
		stored[0] = NIL; stored[1] = NIL;
		run Kafka();
		run Faults();
#ifdef GATEWAY
		run Reconciler();
#endif
		run Worker(0);
		run Worker(1);
		run Quiet()
	}
}
