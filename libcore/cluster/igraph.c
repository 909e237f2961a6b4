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

/* Fill edges (pairs) and weights with the thresholded graph. */
static int collect_edges(const mf_knn_graph *g, float tau, igraph_vector_int_t *edges,
                         igraph_vector_t *w)
{
    for (size_t i = 0; i < g->n; i++)
        for (int r = 0; r < g->k; r++) {
            int64_t j = g->nbr[i * g->k + r];
            float s = g->sim[i * g->k + r];
            if (j < 0 || s < tau)
                break;
            if ((int64_t)i > j && lists(g, (int64_t)i, j, tau))
                continue;
            if (igraph_vector_int_push_back(edges, (igraph_integer_t)i) ||
                igraph_vector_int_push_back(edges, (igraph_integer_t)j) ||
                igraph_vector_push_back(w, s > 0 ? s : 1e-6))
                return mf_set_error(MF_ERR_NOMEM, "out of memory for the igraph edge list");
        }
    return 0;
}

static int node_weights(const float *mag, size_t n, int weight, igraph_vector_t *v)
{
    if (igraph_vector_resize(v, (igraph_integer_t)n))
        return mf_set_error(MF_ERR_NOMEM, "out of memory for vertex weights");
    double mean = 0;
    for (size_t i = 0; weight && i < n; i++)
        mean += mag[i] / (double)n;
    for (size_t i = 0; i < n; i++)
        VECTOR(*v)[i] = weight && mean > 0 && mag[i] > 0 ? mag[i] / mean : 1.0;
    return 0;
}

int mf_cluster_igraph(const mf_knn_graph *g, const float *magnitude, const mf_cluster_params *p,
                      int64_t *label)
{
    igraph_t graph;
    igraph_vector_int_t edges, memb;
    igraph_vector_t ew, vw;
    igraph_vector_int_init(&edges, 0);
    igraph_vector_int_init(&memb, 0);
    igraph_vector_init(&ew, 0);
    igraph_vector_init(&vw, 0);
    int rc = collect_edges(g, p->tau, &edges, &ew);
    if (rc == 0)
        rc = node_weights(magnitude, g->n, p->weight, &vw);
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
    }
    igraph_vector_int_destroy(&edges);
    igraph_vector_int_destroy(&memb);
    igraph_vector_destroy(&ew);
    igraph_vector_destroy(&vw);
    return rc;
}

#else

int mf_cluster_igraph(const mf_knn_graph *g, const float *magnitude, const mf_cluster_params *p,
                      int64_t *label)
{
    return mf_set_error(MF_ERR_UNSUPPORTED,
                        "cluster: %s needs the igraph library "
                        "(libigraph-dev), which this build lacks",
                        mf_cluster_method_name(p->method));
}

#endif
