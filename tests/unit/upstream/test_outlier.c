/* Outlier detection: counting, ejection length and cap, half-open probation and its probe slot,
 * relaxation, bl_server_available(), the directive, and the shared counts under threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "upstream/outlier.c"

#include "core/log.h"

#define T0 1000000ull /* tests start here: "0" would mean "never" in some fields */

struct og {
    struct bl_upstream_group g;
    struct bl_group_state gstate;
    struct bl_outlier_conf oc;
    struct bl_server_state *states;
    char (*names)[32];
};

/* n servers, outlier on with the defaults (5, 5, 10 s, 30 s, 10 %, 300 s). */
static struct og *og_new(uint32_t n)
{
    struct og *t = calloc(1, sizeof(*t));
    t->g.name = "g";
    t->g.servers = calloc(n, sizeof(*t->g.servers));
    t->states = calloc(n, sizeof(*t->states));
    t->names = calloc(n, sizeof(*t->names));
    t->g.nservers = t->g.nprimary = n;
    t->g.gstate = &t->gstate;
    t->oc = (struct bl_outlier_conf){
        .consecutive_5xx = 5,
        .consecutive_gateway = 5,
        .max_ejection_percent = 10,
        .interval_ms = 10000,
        .base_ejection_ms = 30000,
        .max_ejection_time_ms = 300000,
    };
    t->g.outlier = &t->oc;
    for (uint32_t i = 0; i < n; i++) {
        struct bl_upstream_server *s = &t->g.servers[i];
        snprintf(t->names[i], sizeof(t->names[i]), "10.0.0.%u:80", i + 1);
        s->name = t->names[i];
        s->weight = 1;
        s->index = s->id = i;
        s->state = &t->states[i];
        s->group = &t->g;
    }
    return t;
}

static void og_free(struct og *t)
{
    free(t->g.servers);
    free(t->states);
    free(t->names);
    free(t);
}

static struct bl_upstream_server *srv(struct og *t, uint32_t i) { return &t->g.servers[i]; }

static void fail_n(struct bl_upstream_server *s, int n, int status, int gw, uint64_t now)
{
    for (int i = 0; i < n; i++)
        bl_outlier_report(s, status, gw, now);
}

static int32_t ejected(struct og *t)
{
    return atomic_load(&t->gstate.ejected);
}

static uint64_t until(struct bl_upstream_server *s)
{
    return atomic_load(&s->state->ejected_until_ms);
}

/* Ejects s at now with 5 x 503 and moves it to probation at its end; returns that time. */
static uint64_t eject_then_expire(struct bl_upstream_server *s, uint64_t now)
{
    fail_n(s, 5, 503, 0, now);
    assert_int_equal(bl_outlier_server_state(s, now), BL_OUTLIER_EJECTED);
    uint64_t end = until(s);
    assert_int_equal(bl_outlier_admit(s, end), 1);
    assert_int_equal(bl_outlier_server_state(s, end), BL_OUTLIER_PROBATION);
    return end;
}

/* ------------------------------------------------------------------ the error log */

static char log_path[] = "/tmp/ballast_test_outlier_XXXXXX";

static void log_reset(void)
{
    char err[128];
    assert_int_equal(truncate(log_path, 0), 0);
    assert_int_equal(bl_log_open(log_path, BL_LOG_INFO, err, sizeof(err)), 0);
}

/* Whether the error log holds a line containing needle. */
static int log_has(const char *needle)
{
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    if (!found)
        print_error("log has no line with: %s\n", needle);
    return found;
}

/* ------------------------------------------------------------------ counting */

static void test_eject_after_consecutive_5xx(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    log_reset();
    fail_n(s, 4, 500, 0, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 1);
    assert_int_equal(ejected(t), 0);
    bl_outlier_report(s, 500, 0, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 0);
    assert_int_equal(bl_server_available(s, T0), 0);
    assert_int_equal(ejected(t), 1);
    assert_int_equal(until(s), T0 + 30000);
    assert_int_equal(atomic_load(&s->state->ejections), 1);
    assert_true(log_has("[notice]"));
    assert_true(log_has("upstream \"g\" server 10.0.0.1:80 ejected for 30s: 5 consecutive 5xx "
                        "(ejection #1)"));
    /* Still ejected one ms before the end; admitted at the end. */
    assert_int_equal(bl_outlier_admit(s, T0 + 29999), 0);
    assert_int_equal(bl_outlier_admit(s, T0 + 30000), 1);
    assert_int_equal(ejected(t), 0);
    assert_true(log_has("server 10.0.0.1:80: ejection over, on probation"));
    og_free(t);
}

static void test_success_between_resets(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    for (int round = 0; round < 5; round++) {
        fail_n(s, 4, 503, 0, T0);
        bl_outlier_report(s, 200, 0, T0);
    }
    fail_n(s, 2, 0, 1, T0);
    bl_outlier_report(s, 404, 0, T0); /* a 4xx is the server working */
    fail_n(s, 4, 500, 0, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 1);
    assert_int_equal(ejected(t), 0);
    assert_int_equal(atomic_load(&s->state->consecutive_5xx), 4);
    og_free(t);
}

/* Gateway failures: 502/503/504 and connect failures; a 500 breaks the gateway run but still
 * counts as a 5xx. */
static void test_eject_after_consecutive_gateway(void **state)
{
    struct og *t = og_new(10);
    t->oc.consecutive_5xx = 100;
    t->oc.consecutive_gateway = 3;
    struct bl_upstream_server *s = srv(t, 0);
    log_reset();
    bl_outlier_report(s, 502, 0, T0);
    bl_outlier_report(s, 0, 1, T0);
    bl_outlier_report(s, 500, 0, T0);
    assert_int_equal(atomic_load(&s->state->consecutive_gateway), 0);
    assert_int_equal(atomic_load(&s->state->consecutive_5xx), 3);
    bl_outlier_report(s, 504, 0, T0);
    bl_outlier_report(s, 0, 1, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 1);
    bl_outlier_report(s, 503, 0, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 0);
    assert_true(log_has("ejected for 30s: 3 consecutive gateway failures (ejection #1)"));
    og_free(t);
}

/* A detector set to 0 is off; gateway failures count towards consecutive_5xx (as a 503). */
static void test_detector_off(void **state)
{
    struct og *t = og_new(10);
    t->oc.consecutive_gateway = 0;
    struct bl_upstream_server *s = srv(t, 0);
    fail_n(s, 4, 0, 1, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 1);
    bl_outlier_report(s, 0, 1, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 0);

    t->oc.consecutive_gateway = 5;
    t->oc.consecutive_5xx = 0;
    s = srv(t, 1);
    fail_n(s, 50, 500, 0, T0);
    assert_int_equal(bl_outlier_admit(s, T0), 1);
    og_free(t);
}

/* Results of attempts begun before the ejection change nothing while it lasts. */
static void test_reports_while_ejected_ignored(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    fail_n(s, 5, 500, 0, T0);
    fail_n(s, 20, 500, 0, T0 + 10);
    bl_outlier_report(s, 200, 0, T0 + 20);
    assert_int_equal(until(s), T0 + 30000);
    assert_int_equal(atomic_load(&s->state->ejections), 1);
    assert_int_equal(atomic_load(&s->state->consecutive_5xx), 0);
    assert_int_equal(bl_outlier_admit(s, T0 + 20), 0);
    og_free(t);
}

/* ------------------------------------------------------------------ length and cap */

static void test_duration_multiplier_and_cap(void **state)
{
    struct og *t = og_new(10);
    t->oc.base_ejection_ms = 1000;
    t->oc.max_ejection_time_ms = 3500;
    struct bl_upstream_server *s = srv(t, 0);
    uint64_t want[] = {1000, 2000, 3000, 3500, 3500, 3500};
    uint64_t now = T0;
    log_reset();
    for (size_t i = 0; i < BL_ARRAY_LEN(want); i++) {
        fail_n(s, 5, 503, 0, now);
        assert_int_equal(until(s) - now, want[i]);
        assert_int_equal(atomic_load(&s->state->ejections), i + 1);
        now = until(s);
        assert_int_equal(bl_outlier_admit(s, now), 1); /* probation */
    }
    assert_true(log_has("ejected for 3500ms: failed probe (status 503) (ejection #6)"));
    og_free(t);
}

/* 10 servers at 20 %: two ejected at once, the third refused and left in service. */
static void test_max_ejection_percent(void **state)
{
    struct og *t = og_new(10);
    t->oc.max_ejection_percent = 20;
    log_reset();
    fail_n(srv(t, 0), 5, 500, 0, T0);
    fail_n(srv(t, 1), 5, 500, 0, T0);
    assert_int_equal(ejected(t), 2);
    fail_n(srv(t, 2), 5, 500, 0, T0);
    assert_int_equal(ejected(t), 2);
    assert_int_equal(bl_outlier_admit(srv(t, 2), T0), 1);
    assert_int_equal(bl_outlier_server_state(srv(t, 2), T0), BL_OUTLIER_IN_SERVICE);
    assert_int_equal(atomic_load(&srv(t, 2)->state->consecutive_5xx), 0);
    assert_int_equal(atomic_load(&srv(t, 2)->state->ejections), 0);
    assert_true(log_has("server 10.0.0.3:80 not ejected (5 consecutive 5xx): max_ejection 20% "
                        "reached (2 of 10 servers ejected)"));
    /* One ejection ends: the next offender may go. */
    assert_int_equal(bl_outlier_admit(srv(t, 0), T0 + 30000), 1);
    assert_int_equal(ejected(t), 1);
    fail_n(srv(t, 2), 5, 500, 0, T0 + 30000);
    assert_int_equal(ejected(t), 2);
    assert_int_equal(bl_outlier_admit(srv(t, 2), T0 + 30000), 0);
    og_free(t);
}

/* At least one server may always be ejected, even when the percentage rounds to none. */
static void test_min_one_ejection(void **state)
{
    struct og *t = og_new(3);
    t->oc.max_ejection_percent = 0;
    fail_n(srv(t, 0), 5, 500, 0, T0);
    assert_int_equal(ejected(t), 1);
    assert_int_equal(bl_outlier_admit(srv(t, 0), T0), 0);
    fail_n(srv(t, 1), 5, 500, 0, T0);
    assert_int_equal(ejected(t), 1);
    assert_int_equal(bl_outlier_admit(srv(t, 1), T0), 1);
    og_free(t);
}

/* An ejection that is over but that nobody has looked at (hash methods look at few servers)
 * does not hold the cap. */
static void test_cap_sweeps_finished_ejections(void **state)
{
    struct og *t = og_new(5);
    fail_n(srv(t, 0), 5, 500, 0, T0);
    assert_int_equal(ejected(t), 1);
    fail_n(srv(t, 1), 5, 500, 0, T0 + 30000);
    assert_int_equal(ejected(t), 1);
    assert_int_equal(bl_outlier_server_state(srv(t, 0), T0 + 30000), BL_OUTLIER_PROBATION);
    assert_int_equal(bl_outlier_admit(srv(t, 1), T0 + 30000), 0);
    og_free(t);
}

/* ------------------------------------------------------------------ probation */

static void test_probation_one_probe_at_a_time(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    uint64_t now = eject_then_expire(s, T0);
    uint32_t p1 = 0, p2 = 7;
    /* admit() never takes the slot: balancers look at servers they do not pick. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(bl_outlier_admit(s, now), 1);
    assert_int_equal(bl_outlier_begin(s, now, &p1), 1);
    assert_int_not_equal(p1, 0);
    assert_int_equal(atomic_load(&s->state->probes), 1);
    assert_int_equal(bl_outlier_admit(s, now), 0);
    assert_int_equal(bl_server_available(s, now), 0);
    assert_int_equal(bl_outlier_begin(s, now, &p2), 0);
    assert_int_equal(p2, 0);
    /* The probe ended without an outcome (client gone): the slot is free, still probation. */
    bl_outlier_end(s, p1);
    assert_int_equal(atomic_load(&s->state->probes), 0);
    assert_int_equal(bl_outlier_server_state(s, now), BL_OUTLIER_PROBATION);
    assert_int_equal(bl_outlier_admit(s, now + 1), 1);
    assert_int_equal(bl_outlier_begin(s, now + 1, &p2), 1);
    assert_int_not_equal(p2, 0);
    assert_int_not_equal(p2, p1);
    /* A second end() of the old probe frees nothing. */
    bl_outlier_end(s, p1);
    assert_int_equal(bl_outlier_admit(s, now + 1), 0);
    bl_outlier_end(s, p2);
    assert_int_equal(bl_outlier_admit(s, now + 1), 1);
    og_free(t);
}

static void test_probe_success_restores(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    log_reset();
    uint64_t now = eject_then_expire(s, T0);
    uint32_t p = 0;
    assert_int_equal(bl_outlier_begin(s, now, &p), 1);
    bl_outlier_report(s, 200, 0, now + 5);
    bl_outlier_end(s, p);
    assert_int_equal(bl_outlier_server_state(s, now + 5), BL_OUTLIER_IN_SERVICE);
    assert_int_equal(atomic_load(&s->state->up_since_ms), now + 5);
    assert_true(log_has("server 10.0.0.1:80 back in service after probation"));
    /* Full traffic: any number of ordinary attempts at once. */
    for (int i = 0; i < 10; i++) {
        uint32_t q = 99;
        assert_int_equal(bl_outlier_begin(s, now + 6, &q), 1);
        assert_int_equal(q, 0);
    }
    assert_int_equal(atomic_load(&s->state->probes), 0);
    og_free(t);
}

static void test_probe_failure_reejects_longer(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    log_reset();
    uint64_t now = eject_then_expire(s, T0);
    uint32_t p = 0;
    assert_int_equal(bl_outlier_begin(s, now, &p), 1);
    bl_outlier_report(s, 503, 0, now + 5);
    bl_outlier_end(s, p);
    assert_int_equal(bl_outlier_server_state(s, now + 5), BL_OUTLIER_EJECTED);
    assert_int_equal(until(s), now + 5 + 60000);
    assert_int_equal(ejected(t), 1);
    assert_int_equal(atomic_load(&s->state->probes), 0);
    assert_true(log_has("ejected for 1m: failed probe (status 503) (ejection #2)"));
    /* And again, from a gateway failure: 90 s. */
    now = until(s);
    assert_int_equal(bl_outlier_begin(s, now, &p), 1);
    bl_outlier_report(s, 0, 1, now);
    bl_outlier_end(s, p);
    assert_int_equal(until(s), now + 90000);
    assert_true(log_has("ejected for 90s: failed probe (gateway failure) (ejection #3)"));
    og_free(t);
}

/* A probe that never ends (hung, or end() forgotten) holds the slot for one interval only; its
 * late end() does not free the probe that took over. */
static void test_probe_lease_takeover(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    uint64_t now = eject_then_expire(s, T0);
    uint32_t lost = 0, p = 0, q = 0;
    assert_int_equal(bl_outlier_begin(s, now, &lost), 1);
    assert_int_equal(bl_outlier_admit(s, now + 9999), 0);
    assert_int_equal(bl_outlier_begin(s, now + 9999, &p), 0);
    assert_int_equal(bl_outlier_admit(s, now + 10000), 1);
    assert_int_equal(bl_outlier_begin(s, now + 10000, &p), 1);
    assert_int_not_equal(p, lost);
    bl_outlier_end(s, lost);
    assert_int_equal(bl_outlier_begin(s, now + 10001, &q), 0);
    bl_outlier_end(s, p);
    assert_int_equal(bl_outlier_begin(s, now + 10001, &q), 1);
    bl_outlier_end(s, q);
    og_free(t);
}

/* The multiplier loses one per interval spent in full service; time in probation is not
 * service. */
static void test_multiplier_relaxed(void **state)
{
    struct og *t = og_new(10);
    struct bl_upstream_server *s = srv(t, 0);
    uint32_t p;
    /* Back in service at `back` after ejection #1; failing again at once: 60 s. */
    uint64_t now = eject_then_expire(s, T0);
    assert_int_equal(bl_outlier_begin(s, now, &p), 1);
    bl_outlier_report(s, 200, 0, now);
    bl_outlier_end(s, p);
    uint64_t back = now;
    assert_int_equal(bl_outlier_ejections(s, back + 9999), 1);
    assert_int_equal(bl_outlier_ejections(s, back + 10000), 0);
    fail_n(s, 5, 500, 0, back + 9999);
    assert_int_equal(until(s) - (back + 9999), 60000);
    assert_int_equal(atomic_load(&s->state->ejections), 2);

    /* Ejection #2 over, back in service, healthy one interval: ejection #3 lasts 60 s, not 90. */
    now = until(s);
    assert_int_equal(bl_outlier_begin(s, now, &p), 1);
    bl_outlier_report(s, 200, 0, now);
    bl_outlier_end(s, p);
    back = now;
    assert_int_equal(bl_outlier_ejections(s, back + 10000), 1);
    fail_n(s, 5, 500, 0, back + 10000);
    assert_int_equal(until(s) - (back + 10000), 60000);
    assert_int_equal(atomic_load(&s->state->ejections), 2);

    /* Two intervals and more: back to base. */
    now = until(s);
    assert_int_equal(bl_outlier_begin(s, now, &p), 1);
    bl_outlier_report(s, 200, 0, now);
    bl_outlier_end(s, p);
    fail_n(s, 5, 500, 0, now + 25000);
    assert_int_equal(until(s) - (now + 25000), 30000);
    assert_int_equal(atomic_load(&s->state->ejections), 1);

    /* Sitting in probation for long (no traffic) earns nothing: a failed probe still doubles. */
    now = until(s);
    assert_int_equal(bl_outlier_admit(s, now), 1);
    assert_int_equal(bl_outlier_begin(s, now + 100000, &p), 1);
    bl_outlier_report(s, 500, 0, now + 100000);
    bl_outlier_end(s, p);
    assert_int_equal(until(s) - (now + 100000), 60000);
    og_free(t);
}

/* The cap refuses a failed probe's re-ejection: the server goes back to full service. */
static void test_probe_failure_at_cap(void **state)
{
    struct og *t = og_new(4); /* 10 %: one at a time */
    struct bl_upstream_server *a = srv(t, 0), *b = srv(t, 1);
    uint64_t now = eject_then_expire(a, T0);
    fail_n(b, 5, 500, 0, now);
    assert_int_equal(ejected(t), 1);
    uint32_t p;
    assert_int_equal(bl_outlier_begin(a, now, &p), 1);
    bl_outlier_report(a, 500, 0, now);
    bl_outlier_end(a, p);
    assert_int_equal(bl_outlier_server_state(a, now), BL_OUTLIER_IN_SERVICE);
    assert_int_equal(ejected(t), 1);
    for (int i = 0; i < 3; i++) {
        uint32_t q;
        assert_int_equal(bl_outlier_begin(a, now, &q), 1);
        assert_int_equal(q, 0);
    }
    og_free(t);
}

/* ------------------------------------------------------------------ bl_server_available */

static void test_server_available(void **state)
{
    struct og *t = og_new(3);
    struct bl_upstream_server *s = srv(t, 0);
    assert_int_equal(bl_server_available(s, T0), 1);
    atomic_store(&s->state->check_down, 1);
    assert_int_equal(bl_server_available(s, T0), 0);
    atomic_store(&s->state->check_down, 0);
    assert_int_equal(bl_server_available(s, T0), 1);
    fail_n(s, 5, 500, 0, T0);
    assert_int_equal(bl_server_available(s, T0), 0);
    assert_int_equal(bl_server_available(srv(t, 1), T0), 1);
    assert_int_equal(bl_server_available(s, T0 + 30000), 1);
    /* Without outlier detection the state word is not consulted; check_down still is. */
    t->g.outlier = NULL;
    atomic_store(&s->state->probation_until_ms, BL_OUTLIER_ST_EJECTING << BL_OUTLIER_ST_SHIFT);
    assert_int_equal(bl_server_available(s, T0), 1);
    atomic_store(&srv(t, 1)->state->check_down, 1);
    assert_int_equal(bl_server_available(srv(t, 1), T0), 0);
    uint32_t p = 5;
    assert_int_equal(bl_outlier_begin(s, T0, &p), 1);
    assert_int_equal(p, 0);
    bl_outlier_report(s, 500, 0, T0); /* no-op */
    og_free(t);
}

static void test_group_down(void **state)
{
    struct og *t = og_new(3);
    t->oc.max_ejection_percent = 100;
    assert_int_equal(bl_outlier_group_down(&t->g, T0), 0);
    t->g.servers[0].down = 1;
    atomic_store(&srv(t, 1)->state->check_down, 1);
    assert_int_equal(bl_outlier_group_down(&t->g, T0), 0);
    fail_n(srv(t, 2), 5, 500, 0, T0);
    assert_int_equal(bl_outlier_group_down(&t->g, T0), 1);
    /* Probation with the probe out: still nothing to offer; probe back: something. */
    assert_int_equal(bl_outlier_admit(srv(t, 2), T0 + 30000), 1);
    uint32_t p;
    assert_int_equal(bl_outlier_begin(srv(t, 2), T0 + 30000, &p), 1);
    assert_int_equal(bl_outlier_group_down(&t->g, T0 + 30000), 1);
    bl_outlier_end(srv(t, 2), p);
    assert_int_equal(bl_outlier_group_down(&t->g, T0 + 30000), 0);
    /* Passive failures alone are not "down" here: nginx's fallback may still use the server. */
    atomic_store(&srv(t, 2)->state->down_until_ms, T0 + 99999);
    assert_int_equal(bl_outlier_group_down(&t->g, T0 + 30000), 0);
    og_free(t);
}

static void test_recount(void **state)
{
    struct og *t = og_new(10);
    t->oc.max_ejection_percent = 50;
    fail_n(srv(t, 0), 5, 500, 0, T0);
    fail_n(srv(t, 1), 5, 500, 0, T0);
    eject_then_expire(srv(t, 2), T0); /* probation: not counted */
    atomic_store(&t->gstate.ejected, 0); /* a new generation's group state */
    bl_outlier_recount(&t->g);
    assert_int_equal(ejected(t), 2);
    og_free(t);
}

/* ------------------------------------------------------------------ the directive */

static int parse(struct bl_outlier_conf **oc, const char *line, char *err, size_t errlen)
{
    char buf[512], *args[16];
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", line);
    for (char *tok = strtok(buf, " "); tok && n < 16; tok = strtok(NULL, " "))
        args[n++] = tok;
    *err = 0;
    return bl_outlier_parse(oc, args, n, err, errlen);
}

static void test_parse_defaults(void **state)
{
    struct bl_outlier_conf *oc = NULL;
    char err[256];
    assert_int_equal(parse(&oc, "", err, sizeof(err)), BL_OK);
    assert_int_equal(oc->consecutive_5xx, 5);
    assert_int_equal(oc->consecutive_gateway, 5);
    assert_int_equal(oc->interval_ms, 10000);
    assert_int_equal(oc->base_ejection_ms, 30000);
    assert_int_equal(oc->max_ejection_percent, 10);
    assert_int_equal(oc->max_ejection_time_ms, 300000);
    assert_int_equal(parse(&oc, "", err, sizeof(err)), BL_ERR);
    assert_string_equal(err, "\"outlier\" directive is duplicate");
    bl_outlier_conf_free(oc);
    bl_outlier_conf_free(NULL);
}

static void test_parse_values(void **state)
{
    struct bl_outlier_conf *oc = NULL;
    char err[256];
    assert_int_equal(parse(&oc, "consecutive_5xx=3 consecutive_gateway=0 interval=500ms "
                           "base_ejection=1m max_ejection=25%", err, sizeof(err)), BL_OK);
    assert_int_equal(oc->consecutive_5xx, 3);
    assert_int_equal(oc->consecutive_gateway, 0);
    assert_int_equal(oc->interval_ms, 500);
    assert_int_equal(oc->base_ejection_ms, 60000);
    assert_int_equal(oc->max_ejection_percent, 25);
    assert_int_equal(oc->max_ejection_time_ms, 600000);
    bl_outlier_conf_free(oc);
    oc = NULL;
    assert_int_equal(parse(&oc, "base_ejection=30 interval=1m30s max_ejection=100 "
                           "max_ejection_time=2h", err, sizeof(err)), BL_OK);
    assert_int_equal(oc->base_ejection_ms, 30000);
    assert_int_equal(oc->interval_ms, 90000);
    assert_int_equal(oc->max_ejection_percent, 100);
    assert_int_equal(oc->max_ejection_time_ms, 7200000);
    bl_outlier_conf_free(oc);
    oc = NULL;
    assert_int_equal(parse(&oc, "max_ejection=0 max_ejection_time=30s", err, sizeof(err)),
                     BL_OK);
    assert_int_equal(oc->max_ejection_percent, 0);
    assert_int_equal(oc->max_ejection_time_ms, 30000);
    bl_outlier_conf_free(oc);
}

static void test_parse_errors(void **state)
{
    static const struct {
        const char *line, *err;
    } cases[] = {
        {"intervl=3s", "invalid parameter \"intervl=3s\""},
        {"consecutive_5xx", "invalid parameter \"consecutive_5xx\""},
        {"consecutive_5xx=abc", "invalid value \"abc\" for \"consecutive_5xx\""},
        {"consecutive_5xx=-1", "invalid value \"-1\" for \"consecutive_5xx\""},
        {"consecutive_gateway=", "invalid value \"\" for \"consecutive_gateway\""},
        {"interval=0", "invalid value \"0\" for \"interval\""},
        {"interval=3x", "invalid value \"3x\" for \"interval\""},
        {"base_ejection=8d", "invalid value \"8d\" for \"base_ejection\""},
        {"max_ejection=101", "invalid value \"101\" for \"max_ejection\""},
        {"max_ejection=10%%", "invalid value \"10%%\" for \"max_ejection\""},
        {"max_ejection=%", "invalid value \"%\" for \"max_ejection\""},
        {"interval=1s interval=2s", "duplicate parameter \"interval\""},
        {"consecutive_5xx=0 consecutive_gateway=0",
         "\"outlier\" with consecutive_5xx=0 and consecutive_gateway=0 never ejects"},
        {"base_ejection=1m max_ejection_time=30s",
         "\"max_ejection_time\" is less than \"base_ejection\""},
    };
    for (size_t i = 0; i < BL_ARRAY_LEN(cases); i++) {
        struct bl_outlier_conf *oc = NULL;
        char err[256];
        assert_int_equal(parse(&oc, cases[i].line, err, sizeof(err)), BL_ERR);
        assert_null(oc);
        assert_string_equal(err, cases[i].err);
    }
}

/* ------------------------------------------------------------------ threads */

#define NTHREADS 4
#define NSERVERS 10

struct hammer {
    struct og *t;
    _Atomic int stop;
    _Atomic int max_ejected, min_ejected;
    _Atomic uint64_t ejections;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void watch(struct hammer *h)
{
    int32_t e = atomic_load(&h->t->gstate.ejected);
    int m = atomic_load(&h->max_ejected);
    while (e > m && !atomic_compare_exchange_weak(&h->max_ejected, &m, e))
        ;
    m = atomic_load(&h->min_ejected);
    while (e < m && !atomic_compare_exchange_weak(&h->min_ejected, &m, e))
        ;
}

static void *hammer_thread(void *arg)
{
    struct hammer *h = arg;
    uint64_t rng = (uint64_t)(uintptr_t)&rng | 1;
    while (!atomic_load(&h->stop)) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        uint32_t i = (uint32_t)(rng % NSERVERS);
        struct bl_upstream_server *s = srv(h->t, i);
        uint64_t now = mono_ms();
        watch(h);
        if (!bl_server_available(s, now))
            continue;
        uint32_t p;
        if (!bl_outlier_begin(s, now, &p))
            continue;
        /* Servers 0-3 mostly fail, the rest mostly work. */
        int bad = (rng >> 20) % 100 < (i < 4 ? 90u : 5u);
        int gw = bad && (rng >> 40) % 2;
        bl_outlier_report(s, bad && !gw ? 503 : 200, gw, now);
        bl_outlier_end(s, p);
        watch(h);
    }
    return NULL;
}

static void test_threads_cap_holds(void **state)
{
    struct og *t = og_new(NSERVERS);
    t->oc.max_ejection_percent = 20;
    t->oc.base_ejection_ms = 2;
    t->oc.max_ejection_time_ms = 10;
    t->oc.interval_ms = 5000; /* the probe lease: never runs out during the test */
    t->oc.consecutive_5xx = 3;
    t->oc.consecutive_gateway = 2;
    int saved = bl_log_level;
    bl_log_level = BL_LOG_EMERG; /* thousands of transitions */
    struct hammer h = {.t = t, .min_ejected = 1000};
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_thread, &h), 0);
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, NULL);
    atomic_store(&h.stop, 1);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    bl_log_level = saved;

    uint32_t total = 0;
    for (uint32_t i = 0; i < NSERVERS; i++)
        total += atomic_load(&srv(t, i)->state->ejections);
    print_message("ejected at most %d at once (cap 2), at least %d; multipliers total %u\n",
                  atomic_load(&h.max_ejected), atomic_load(&h.min_ejected), total);
    assert_true(atomic_load(&h.max_ejected) <= 2);
    assert_true(atomic_load(&h.min_ejected) >= 0);
    assert_true(total > 0); /* something was ejected */
    /* Quiescent: the count is exactly the servers in the ejected state, probes all back. */
    int32_t before = ejected(t);
    bl_outlier_recount(&t->g);
    assert_int_equal(ejected(t), before);
    for (uint32_t i = 0; i < NSERVERS; i++) {
        assert_int_equal(atomic_load(&srv(t, i)->state->probes), 0);
        assert_false(atomic_load(&srv(t, i)->state->probation_until_ms) & BL_OUTLIER_PROBE_OUT);
    }
    og_free(t);
}

/* Threads race begin() for one probation server's slot (no reports, so no state change): the
 * winner is always alone. */
struct race {
    struct bl_upstream_server *s;
    uint64_t now;
    _Atomic int stop, holders, max_holders;
    _Atomic long probes;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->stop)) {
        uint32_t p;
        if (!bl_outlier_admit(r->s, r->now) || !bl_outlier_begin(r->s, r->now, &p))
            continue;
        int n = atomic_fetch_add(&r->holders, 1) + 1;
        int m = atomic_load(&r->max_holders);
        while (n > m && !atomic_compare_exchange_weak(&r->max_holders, &m, n))
            ;
        atomic_fetch_add(&r->probes, 1);
        atomic_fetch_sub(&r->holders, 1);
        bl_outlier_end(r->s, p);
    }
    return NULL;
}

static void test_threads_one_probe(void **state)
{
    struct og *t = og_new(NSERVERS);
    struct race r = {.s = srv(t, 0)};
    r.now = eject_then_expire(r.s, T0);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r), 0);
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, NULL);
    atomic_store(&r.stop, 1);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    print_message("%ld probes, at most %d out at once\n", atomic_load(&r.probes),
                  atomic_load(&r.max_holders));
    assert_int_equal(atomic_load(&r.max_holders), 1);
    assert_true(atomic_load(&r.probes) > 0);
    assert_int_equal(atomic_load(&r.s->state->probes), 0);
    assert_int_equal(bl_outlier_server_state(r.s, r.now), BL_OUTLIER_PROBATION);
    og_free(t);
}

int main(void)
{
    int fd = mkstemp(log_path);
    if (fd < 0)
        return 1;
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eject_after_consecutive_5xx),
        cmocka_unit_test(test_success_between_resets),
        cmocka_unit_test(test_eject_after_consecutive_gateway),
        cmocka_unit_test(test_detector_off),
        cmocka_unit_test(test_reports_while_ejected_ignored),
        cmocka_unit_test(test_duration_multiplier_and_cap),
        cmocka_unit_test(test_max_ejection_percent),
        cmocka_unit_test(test_min_one_ejection),
        cmocka_unit_test(test_cap_sweeps_finished_ejections),
        cmocka_unit_test(test_probation_one_probe_at_a_time),
        cmocka_unit_test(test_probe_success_restores),
        cmocka_unit_test(test_probe_failure_reejects_longer),
        cmocka_unit_test(test_probe_lease_takeover),
        cmocka_unit_test(test_multiplier_relaxed),
        cmocka_unit_test(test_probe_failure_at_cap),
        cmocka_unit_test(test_server_available),
        cmocka_unit_test(test_group_down),
        cmocka_unit_test(test_recount),
        cmocka_unit_test(test_parse_defaults),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_threads_cap_holds),
        cmocka_unit_test(test_threads_one_probe),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char err[128];
    bl_log_open("stderr", BL_LOG_NOTICE, err, sizeof(err));
    unlink(log_path);
    return rc;
}
