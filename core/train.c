/* train.c — the training loop: seeded shuffling, batches, the heads' weighted losses
 * (static or learned by uncertainty), the NaN guard, gradient clipping, optimizer steps,
 * evaluation each epoch, early stopping with the best weights kept, the test evaluation, and
 * the run's files (config.ini, train.csv, eval.csv, metrics.json). */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Higher is better for ranking and AUC figures, lower for losses and errors. */
static int lower_is_better(const char *metric)
{
    return strstr(metric, "loss") || strstr(metric, "mse") || strstr(metric, "mae") ||
           strstr(metric, "rmse");
}

static long all_rows_w(ts_exp *x)
{
    long n = 0;
    for (int i = 0; i < x->ctx.nparams; i++)
        if (!x->ctx.params[i]->shared)
            n += (long)x->ctx.params[i]->rows * x->ctx.params[i]->cols;
    return n;   /* the w block is the arena's first n floats (ts_ctx_alloc_params) */
}

static int load_batch(ts_exp *x, ts_phase split, const long *rows, int n, ts_err *e)
{
    const ts_dataset_ops *ops = x->data_pl->ops;
    ts_err pe;
    if (ops->batch(&x->data, split, rows, n, &pe))
        return ts_fail(e, "[data] %s: %s", x->data_pl->name, pe.msg);
    for (int i = 0; i < x->data.nfield; i++) x->data.field[i].dim[0] = n;
    return 0;
}

int ts_exp_evaluate(ts_exp *x, ts_phase split, ts_err *e)
{
    long n = x->data.nrows[split];
    x->ctx.phase = split;
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        ts_err pe;
        if (hn->ops->eval_begin && hn->ops->eval_begin(&hn->H, split, &pe))
            return ts_fail(e, "[%s] eval: %s", hn->cfg->name, pe.msg);
    }
    long *rows = malloc((size_t)x->eval_batch * sizeof *rows);
    if (!rows) return ts_fail(e, "out of memory");
    for (long s = 0; s < n; s += x->eval_batch) {
        int b = (int)(n - s < x->eval_batch ? n - s : x->eval_batch);
        for (int i = 0; i < b; i++) rows[i] = s + i;
        if (load_batch(x, split, rows, b, e) || ts_exp_forward(x, split, b, e)) {
            free(rows);
            return -1;
        }
        for (int h = 0; h < x->nheads; h++) {
            ts_hnode *hn = &x->heads[h];
            double loss = 0;
            ts_err pe;
            if (hn->ops->forward(&hn->H, split, &loss, &pe)) {
                free(rows);
                return ts_fail(e, "[%s] forward: %s", hn->cfg->name, pe.msg);
            }
        }
    }
    free(rows);
    for (int h = 0; h < x->nheads; h++) {
        ts_hnode *hn = &x->heads[h];
        ts_err pe;
        x->ctx.phase = split;
        if (hn->ops->eval_end && hn->ops->eval_end(&hn->H, split, &pe))
            return ts_fail(e, "[%s] eval: %s", hn->cfg->name, pe.msg);
    }
    return 0;
}

/* The first layer whose output holds a NaN or an infinity, for the NaN guard's message. */
static const char *first_nonfinite(ts_exp *x)
{
    for (int i = 0; i < x->nnodes; i++) {
        ts_layer *L = &x->nodes[i].L;
        for (int k = 0; k < L->nout; k++) {
            ts_tensor *t = &L->out[k];
            if (t->dtype != TS_F32) continue;
            long n = ts_numel(t);
            for (long j = 0; j < n; j++)
                if (!isfinite(t->x[j])) return x->nodes[i].cfg->name;
        }
    }
    return NULL;
}

static double grad_norm(ts_exp *x)
{
    double s = 0;
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared || (p->flags & TS_PARAM_FROZEN)) continue;
        if (p->flags & TS_PARAM_SPARSE) {
            for (int k = 0; k < p->ntouched; k++) {
                const float *g = p->g + (size_t)p->touched[k] * p->cols;
                for (int j = 0; j < p->cols; j++) s += (double)g[j] * g[j];
            }
        } else {
            long n = (long)p->rows * p->cols;
            for (long j = 0; j < n; j++) s += (double)p->g[j] * p->g[j];
        }
    }
    return sqrt(s);
}

static void scale_grads(ts_exp *x, float c)
{
    for (int i = 0; i < x->ctx.nparams; i++) {
        ts_param *p = x->ctx.params[i];
        if (p->shared) continue;
        if (p->flags & TS_PARAM_SPARSE) {
            for (int k = 0; k < p->ntouched; k++)
                cblas_sscal(p->cols, c, p->g + (size_t)p->touched[k] * p->cols, 1);
        } else {
            cblas_sscal(p->rows * p->cols, c, p->g, 1);
        }
    }
}

static int append(FILE *f, const char *path, ts_err *e)
{
    if (ferror(f)) return ts_fail(e, "%s: write failed (disk full?)", path);
    fflush(f);
    return 0;
}

static int find_metric(ts_exp *x, const char *name, double *v)
{
    for (int i = 0; i < x->ctx.nmetrics; i++) {
        char full[3 * TS_NAME_MAX];
        snprintf(full, sizeof full, "%s.%s", x->ctx.metrics[i].task, x->ctx.metrics[i].metric);
        if (!strcmp(full, name)) { *v = x->ctx.metrics[i].value; return 0; }
    }
    return -1;
}

static void write_eval_rows(FILE *f, ts_exp *x, long epoch, long step)
{
    for (int i = 0; i < x->ctx.nmetrics; i++) {
        ts_metric_rec *m = &x->ctx.metrics[i];
        fprintf(f, "%ld,%ld,%s,%s,%s,%.9g\n", epoch, step, ts_phase_name(m->split), m->task,
                m->metric, m->value);
    }
}

int ts_exp_train(ts_exp *x, FILE *log, ts_err *e)
{
    if (ts_exp_build(x, e)) return -1;
    if (x->threads > 0) openblas_set_num_threads((int)x->threads);
    const char *dir = x->ctx.results_dir;
    if (ts_mkdirs(dir, e)) return -1;
    char path[TS_PATH_MAX + 32], tpath[TS_PATH_MAX + 32], epath[TS_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.ini", dir);
    if (ts_ini_write(&x->ini, path, e)) return -1;
    snprintf(tpath, sizeof tpath, "%s/train.csv", dir);
    snprintf(epath, sizeof epath, "%s/eval.csv", dir);
    FILE *ft = fopen(tpath, "w"), *fe = fopen(epath, "w");
    if (!ft || !fe) {
        if (ft) fclose(ft);
        if (fe) fclose(fe);
        return ts_fail(e, "%s: cannot write the run's files", dir);
    }
    fprintf(ft, "step,epoch,examples,loss");
    for (int h = 0; h < x->nheads; h++) fprintf(ft, ",loss.%s", x->heads[h].H.name);
    fprintf(ft, ",examples_per_sec\n");
    fprintf(fe, "epoch,step,split,task,metric,value\n");

    const ts_optim_ops *oo = x->opt_pl->ops;
    long ntrain = x->data.nrows[TS_TRAIN];
    long steps_per_epoch = (ntrain + x->batch - 1) / x->batch;
    long *order = malloc((size_t)ntrain * sizeof *order);
    long nw = all_rows_w(x);
    float *best = malloc((size_t)(nw ? nw : 1) * sizeof *best);
    if (!order || !best) { free(order); free(best); fclose(ft); fclose(fe);
        return ts_fail(e, "out of memory"); }
    for (long i = 0; i < ntrain; i++) order[i] = i;
    memcpy(best, x->arena, (size_t)nw * sizeof *best);

    int rc = 0, tty = log && isatty(fileno(log));
    int minimize = x->early_stop[0] ? lower_is_better(x->early_stop) : 0;
    double best_score = minimize ? INFINITY : -INFINITY, t_start = now(), t_log = t_start;
    double train_time = 0;
    long step = 0, seen = 0, seen_log = 0, best_epoch = 0, bad_evals = 0, logged_steps = 0;
    double loss_acc = 0;
    for (int h = 0; h < x->nheads; h++) x->heads[h].loss_sum = 0;

    for (long epoch = 1; epoch <= x->epochs && !rc; epoch++) {
        double t_epoch = now();
        ts_rng_shuffle(&x->ctx.rng, order, ntrain);
        for (long s = 0; s < steps_per_epoch && !rc; s++) {
            int b = (int)(ntrain - s * x->batch < x->batch ? ntrain - s * x->batch : x->batch);
            if ((rc = load_batch(x, TS_TRAIN, order + s * x->batch, b, e))) break;
            if ((rc = ts_exp_forward(x, TS_TRAIN, b, e))) break;
            double total = 0;
            for (int h = 0; h < x->nheads && !rc; h++) {
                ts_hnode *hn = &x->heads[h];
                double scale = hn->weight;
                if (x->log_var) scale *= exp(-x->log_var->w[h]);
                hn->H.grad_scale = (float)scale;
                double loss = 0;
                ts_err pe;
                if (hn->ops->forward(&hn->H, TS_TRAIN, &loss, &pe)) {
                    rc = ts_fail(e, "[%s] forward: %s", hn->cfg->name, pe.msg);
                    break;
                }
                if (!isfinite(loss)) {
                    const char *bad = first_nonfinite(x);
                    rc = ts_fail(e, "step %ld (epoch %ld): the loss of [%s] is %g; %s%s%s. Lower "
                                 "[optimizer] lr, set [train] clip_norm, or check the data. The "
                                 "files written so far are kept in %s", step + 1, epoch,
                                 hn->cfg->name, loss,
                                 bad ? "the first layer with a non-finite output is [" :
                                       "every layer's output is finite (the head or its loss "
                                       "overflowed)", bad ? bad : "", bad ? "]" : "", dir);
                    break;
                }
                hn->last_loss = loss;
                hn->loss_sum += loss;
                if (x->log_var) {
                    /* Kendall et al.: L = sum_k exp(-s_k) L_k + s_k, so dL/ds_k = 1 - exp(-s_k) L_k */
                    x->log_var->g[h] += (float)(1.0 - exp(-x->log_var->w[h]) * loss * hn->weight);
                    total += exp(-x->log_var->w[h]) * hn->weight * loss + x->log_var->w[h];
                } else {
                    total += hn->weight * loss;
                }
            }
            if (rc) break;
            if ((rc = ts_exp_backward(x, e))) break;
            if (x->clip_norm > 0) {
                double gn = grad_norm(x);
                if (!isfinite(gn)) {
                    rc = ts_fail(e, "step %ld (epoch %ld): the gradient norm is %g; lower [optimizer]"
                                 " lr. The files written so far are kept in %s", step + 1, epoch,
                                 gn, dir);
                    break;
                }
                if (gn > x->clip_norm) scale_grads(x, (float)(x->clip_norm / gn));
            }
            step++;
            for (int i = 0; i < x->ctx.nparams && !rc; i++) {
                ts_param *p = x->ctx.params[i];
                if (p->shared || (p->flags & TS_PARAM_FROZEN)) continue;
                ts_err pe;
                if (oo->step(x->opt_state, p, step, 1.0f, &pe))
                    rc = ts_fail(e, "[optimizer] %s on %s: %s", x->opt_pl->name, p->name, pe.msg);
            }
            ts_params_zero_grad(&x->ctx);
            seen += b;
            loss_acc += total;
            logged_steps++;
            if (step % x->log_every == 0 || s == steps_per_epoch - 1) {
                double t = now(), eps = (seen - seen_log) / (t - t_log > 1e-9 ? t - t_log : 1e-9);
                fprintf(ft, "%ld,%.6f,%ld,%.9g", step, (double)step / steps_per_epoch, seen,
                        loss_acc / logged_steps);
                for (int h = 0; h < x->nheads; h++) {
                    fprintf(ft, ",%.9g", x->heads[h].loss_sum / logged_steps);
                    x->heads[h].loss_sum = 0;
                }
                fprintf(ft, ",%.1f\n", eps);
                if ((rc = append(ft, tpath, e))) break;
                if (tty) {
                    double done = (double)step / (x->epochs * steps_per_epoch);
                    double eta = (t - t_start) * (1 - done) / (done > 0 ? done : 1);
                    fprintf(log, "\r%s  epoch %ld/%ld  step %ld  loss %.4f  %.0f ex/s  ETA %d:%02d   ",
                            x->name, epoch, x->epochs, step, loss_acc / logged_steps, eps,
                            (int)eta / 60, (int)eta % 60);
                    fflush(log);
                }
                loss_acc = 0;
                logged_steps = 0;
                t_log = t;
                seen_log = seen;
            }
        }
        train_time += now() - t_epoch;
        if (rc) break;
        /* Validation. */
        x->ctx.nmetrics = 0;
        if (x->data.nrows[TS_VALID] > 0 && (rc = ts_exp_evaluate(x, TS_VALID, e))) break;
        write_eval_rows(fe, x, epoch, step);
        if ((rc = append(fe, epath, e))) break;
        double score = NAN;
        int improved = 1;
        if (x->early_stop[0]) {
            if (find_metric(x, x->early_stop, &score)) {
                rc = ts_fail(e, "[train] early_stop = %s: no head reported that figure on the "
                             "validation split; use TASK.METRIC, e.g. %s.%s", x->early_stop,
                             x->ctx.nmetrics ? x->ctx.metrics[0].task : "task",
                             x->ctx.nmetrics ? x->ctx.metrics[0].metric : "auc");
                break;
            }
            improved = isfinite(score) && (minimize ? score < best_score : score > best_score);
        }
        if (improved) {
            best_score = score;
            best_epoch = epoch;
            bad_evals = 0;
            memcpy(best, x->arena, (size_t)nw * sizeof *best);
        } else {
            bad_evals++;
        }
        if (log) {
            if (tty) fprintf(log, "\r");
            fprintf(log, "%s  epoch %ld/%ld  %.1fs  %.0f ex/s", x->name, epoch, x->epochs,
                    now() - t_epoch, ntrain / (train_time > 0 ? train_time / epoch : 1));
            int shown = 0;
            for (int i = 0; i < x->ctx.nmetrics && shown < 4; i++) {
                ts_metric_rec *m = &x->ctx.metrics[i];
                if (!strcmp(m->metric, "loss")) continue;
                fprintf(log, "  valid %s.%s %.4f", m->task, m->metric, m->value);
                shown++;
            }
            fprintf(log, "%s\n", improved && x->early_stop[0] ? "  *" : "");
        }
        if (x->patience > 0 && bad_evals >= x->patience) {
            if (log) fprintf(log, "%s  early stop: %s did not improve for %ld epochs\n", x->name,
                             x->early_stop, x->patience);
            break;
        }
    }
    free(order);
    fclose(ft);
    if (rc) { fclose(fe); free(best); return -1; }

    /* The best weights, evaluated on validation and test. */
    memcpy(x->arena, best, (size_t)nw * sizeof *best);
    free(best);
    ts_metric_rec *all = NULL;
    int nall = 0;
    for (int sp = TS_VALID; sp <= TS_TEST && !rc; sp++) {
        if (x->data.nrows[sp] <= 0) continue;
        x->ctx.nmetrics = 0;
        if ((rc = ts_exp_evaluate(x, (ts_phase)sp, e))) break;
        if (sp == TS_TEST) write_eval_rows(fe, x, 0, step);
        ts_metric_rec *m = realloc(all, (size_t)(nall + x->ctx.nmetrics + 8) * sizeof *m);
        if (!m) { rc = ts_fail(e, "out of memory"); break; }
        all = m;
        memcpy(all + nall, x->ctx.metrics, (size_t)x->ctx.nmetrics * sizeof *m);
        nall += x->ctx.nmetrics;
    }
    fclose(fe);
    if (!rc) {
        /* Reports of layers and heads (gates.csv, item vectors...). */
        for (int i = 0; i < x->nnodes && !rc; i++) {
            ts_node *nd = &x->nodes[i];
            ts_err pe;
            if (nd->ops->report && nd->ops->report(&nd->L, dir, &pe))
                rc = ts_fail(e, "[%s] report: %s", nd->cfg->name, pe.msg);
        }
        for (int h = 0; h < x->nheads && !rc; h++) {
            ts_hnode *hn = &x->heads[h];
            ts_err pe;
            if (hn->ops->report && hn->ops->report(&hn->H, dir, &pe))
                rc = ts_fail(e, "[%s] report: %s", hn->cfg->name, pe.msg);
        }
    }
    if (!rc) {
        ts_metric_rec extra[4] = {
            {TS_TRAIN, "run", "examples_per_sec", seen / (train_time > 0 ? train_time : 1)},
            {TS_TRAIN, "run", "seconds", now() - t_start},
            {TS_TRAIN, "run", "best_epoch", (double)best_epoch},
            {TS_TRAIN, "run", "steps", (double)step}};
        memcpy(all + nall, extra, sizeof extra);
        nall += 4;
        char mpath[TS_PATH_MAX + 32];
        snprintf(mpath, sizeof mpath, "%s/metrics.json", dir);
        rc = ts_write_metrics_json(mpath, all, nall, e);
        if (!rc && log) {
            for (int i = 0; i < nall; i++)
                if (all[i].split == TS_TEST && strcmp(all[i].metric, "loss"))
                    fprintf(log, "%s  test %s.%s = %.4f\n", x->name, all[i].task, all[i].metric,
                            all[i].value);
            fprintf(log, "%s  results in %s\n", x->name, dir);
        }
    }
    free(all);
    return rc;
}

int ts_run(const char *ini_path, const ts_run_opts *o, ts_err *e)
{
    ts_exp *x = ts_exp_load(ini_path, o, e);
    if (!x) return -1;
    FILE *log = o ? o->log : NULL;
    int rc = ts_exp_train(x, log, e);
    ts_exp_free(x);
    return rc;
}
