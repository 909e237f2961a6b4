/* igraph.c - Infomap and Leiden from the igraph C library on the thresholded kNN graph.
 *
 * Each undirected edge appears once (i -> j kept when i < j, or when j does not list
 * i). igraph's default random generator is seeded before every run so results repeat. */
#include <stdlib.h>

#include "cluster_internal.h"
#include "mf/metrics.h"
#include "mf/status.h"

#ifdef MF_HAVE_IGRAPH
#include <igraph.h>

static int lists(const mf_knn_graph *g, int64_t i, int64_t j, float tau)
{
    const int64_t *nb = g->nbr + (size_t)j * g->k;
    for (int r = 0; r < g->k; r++)
        if (nb[r] == i)
            return g->sim[(size_t)j * g->k + r] >= tau;
    return 0;
}

/* Fill edges (pairs) and weights with the thresholded graph between anchors (between
 * every row when is_anchor is NULL). */
static int collect_edges(const mf_knn_graph *g, const unsigned char *is_anchor, float tau,
                         igraph_vector_int_t *edges, igraph_vector_t *w)
{
    for (size_t i = 0; i < g->n; i++)
        for (int r = 0; r < g->k && (!is_anchor || is_anchor[i]); r++) {
            int64_t j = g->nbr[i * g->k + r];
            float s = g->sim[i * g->k + r];
            if (j < 0 || s < tau)
                break;
            if ((is_anchor && !is_anchor[j]) ||
                ((int64_t)i > j && lists(g, (int64_t)i, j, tau)))
                continue;
            if (igraph_vector_int_push_back(edges, (igraph_integer_t)i) ||
                igraph_vector_int_push_back(edges, (igraph_integer_t)j) ||
                igraph_vector_push_back(w, s > 0 ? s : 1e-6))
                return mf_set_error(MF_ERR_NOMEM, "out of memory for the igraph edge list");
        }
    return 0;
}

/* Every row weighs the same: quality acts through who is an anchor, not through weights
 * (with magnitudes as node weights, Leiden's penalty let low-quality rows gather). */
int mf_cluster_igraph(const mf_knn_graph *g, const unsigned char *is_anchor,
                      const mf_cluster_params *p, int64_t *label)
{
    igraph_t graph;
    igraph_vector_int_t edges, memb;
    igraph_vector_t ew, vw;
    igraph_vector_int_init(&edges, 0);
    igraph_vector_int_init(&memb, 0);
    igraph_vector_init(&ew, 0);
    igraph_vector_init(&vw, 0);
    int rc = collect_edges(g, is_anchor, p->tau, &edges, &ew);
    if (rc == 0 && igraph_vector_resize(&vw, (igraph_integer_t)g->n))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for vertex weights");
    if (rc == 0)
        igraph_vector_fill(&vw, 1.0);
    if (rc == 0 && igraph_create(&graph, &edges, (igraph_integer_t)g->n, IGRAPH_UNDIRECTED))
        rc = mf_set_error(MF_ERR_INTERNAL, "igraph: cannot create the graph");
    if (rc == 0) {
        igraph_rng_seed(igraph_rng_default(), 20240611);
        igraph_error_t e;
        if (p->method == MF_CLUSTER_INFOMAP) {
            igraph_real_t codelength;
            e = igraph_community_infomap(&graph, &ew, &vw, 1, &memb, &codelength);
        } else {
            igraph_integer_t nc;
            igraph_real_t q;
            e = igraph_community_leiden(&graph, &ew, &vw, p->resolution, 0.01, 0, 2, &memb, &nc,
                                        &q);
        }
        if (e != IGRAPH_SUCCESS)
            rc = mf_set_error(MF_ERR_INTERNAL, "igraph %s failed: %s",
                              mf_cluster_method_name(p->method), igraph_strerror(e));
        igraph_destroy(&graph);
    }
    if (rc == 0) {
        for (size_t i = 0; i < g->n; i++)
            label[i] = VECTOR(memb)[i];
        int64_t groups = mf_labels_densify(g->n, label, label);
        rc = groups < 0 ? (int)groups : 0;
        for (size_t i = 0; rc == 0 && is_anchor && i < g->n; i++)
            if (!is_anchor[i])
                label[i] =
                    -1; /* ids stay below the number of rows, as join_communities needs */
    }
    igraph_vector_int_destroy(&edges);
    igraph_vector_int_destroy(&memb);
    igraph_vector_destroy(&ew);
    igraph_vector_destroy(&vw);
    return rc;
}

#else

int mf_cluster_igraph(const mf_knn_graph *g, const unsigned char *is_anchor,
                      const mf_cluster_params *p, int64_t *label)
{
    (void)g, (void)is_anchor, (void)label;
    return mf_set_error(MF_ERR_UNSUPPORTED,
                        "cluster: %s needs the igraph library "
                        "(libigraph-dev), which this build lacks",
                        mf_cluster_method_name(p->method));
}

#endif
