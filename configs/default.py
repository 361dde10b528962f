"""Default: BEIR SciFact with all-MiniLM-L6-v2 embeddings from the data folder beside the checkout.

Override any field on the command line, e.g. ``--config.data.root=/data/beir`` (or set
``SMEC_DATA_DIR``), ``--config.ladder='(384,128,32)'``.
"""

import ml_collections

from smec_jax import methods  # noqa: F401  (registers the methods and their config blocks)
from smec_jax.datasets import pseudo_queries
from smec_jax.datasets.data import default_data_root
from smec_jax.training import checks


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "beir"  # beir | arrays | tfds | synthetic
    c.data.root = default_data_root()
    c.data.dataset = "scifact"
    c.data.encoder = "all-MiniLM-L6-v2"
    c.data.tfds_dir = ""
    # source=arrays (smec_jax/datasets/arrays.py, docs/guide/your-data.md): an (n, D) .npy of
    # documents, optionally a .npy of queries (a query log), ids files (one id per line;
    # default row numbers), training judgments (TSV; validation is carved from them) and
    # test judgments (TSV; read only by the evaluation). With no judgments, only label-free
    # methods train.
    c.data.corpus = ""
    c.data.queries = ""
    c.data.corpus_ids = ""
    c.data.query_ids = ""
    c.data.qrels = ""
    c.data.test_qrels = ""
    # Pseudo-queries (smec_jax/datasets/pseudo_queries.py): the corpus's titles and sentences embedded
    # with its encoder, the unlabelled queries of train.unlabelled_queries = pseudo. A folder
    # made by `launch.embed --pseudo_queries RULE`, or "" = pseudo_cache/<dataset>/<encoder>/
    # <rule>, made there on first use (needs the encode extra and the encoder: encoder_model
    # is its local folder or package name, "" = data.encoder).
    c.data.pseudo_queries = ""
    c.data.pseudo_rule = "sentences"  # sentences | first | titles | documents (no encoder)
    c.data.pseudo_cache = pseudo_queries.DEFAULT_CACHE
    c.data.encoder_model = ""
    # make_synthetic kwargs, used with source=synthetic (configs/synthetic.py)
    c.data.synthetic = ml_collections.ConfigDict(
        {"n_docs": 2000, "n_train": 400, "n_test": 100, "dim": 64, "rank": 16, "seed": 0}
    )

    # Sizes to train and score, largest (the original dimension) first.
    c.ladder = (384, 256, 128, 64, 32)

    # What `python -m launch.train` fits: any registered method (smec_jax/methods;
    # `python -m launch.train --helpfull` and docs/guide/methods.md list them all). A method
    # sets trainer fields below on a copy of this config.
    # SMEC with the listwise distillation term: validation (held-out training queries whose
    # relevant documents training never sees) favours it over plain SMEC on SciFact and
    # NFCorpus (docs/results/auto-minilm). The paper's plain SMEC: --config.method=smec.
    c.method = "smec_distill"

    c.model = ml_collections.ConfigDict()
    c.model.kind = "linear"  # linear | residual_mlp
    c.model.out_dim = 0  # N; 0 = the embedding size D
    c.model.hidden = 512  # residual_mlp only
    # identity (DESIGN 2.1) | pca: start from the centred PCA rotation of the corpus (full-size
    # cosines unchanged up to centring). pca was chosen on the validation split (README).
    c.model.init = "pca"
    # A second linear map for queries (documents x W + b, queries q Wq + bq; same output dims,
    # selection and nesting): what a query needs from a vector need not be what a stored
    # document keeps.
    c.model.asymmetric = False

    c.train = ml_collections.ConfigDict()
    c.train.schedule = "sequential"  # sequential (SMRL) | joint (MRL); ablations set it
    # Steps of the joint schedule's one stage: stage (steps_per_stage, the MRL ablation) |
    # ladder (steps_per_stage x the sequential schedule's stages: SMEC's total budget)
    c.train.joint_budget = "stage"
    c.train.supervised = True  # rank loss on qrels; False = label-free (S-XBM loss alone)
    c.train.split = "train"  # qrels split to train on; validation is carved from it
    c.train.val_fraction = 0.15
    # How validation queries are held out so that none has a relevant doc training sees:
    # auto (components, else doc_holdout for dense judgments, else random with a warning) |
    # components | doc_holdout | random (smec_jax/training/splits.py: split_train_val)
    c.train.val_split = "auto"
    c.train.batch_queries = 128
    c.train.n_pos = 2  # judged-relevant docs per query in a batch
    c.train.n_hard = 6  # hard negatives per query (from a pool mined once)
    c.train.hard_pool = 30
    c.train.unsup_batch = 1024  # docs per batch for smec_unsup
    c.train.lr = 1e-3
    c.train.lr_decay = "constant"  # constant | cosine | linear: over each stage's steps
    c.train.ads_lr = 0.05
    # Cosine multiplier inside the rank loss (DESIGN default 1; 20 chosen on validation).
    c.train.score_scale = 20.0
    c.train.full_weight = 1.0  # weight of size d_{t-1} in the rank loss (Search-Adaptor: 0)
    # Quantization-aware training: none | binary | int8 | int4 | int2 (every loss term sees
    # those codes, with a straight-through gradient: objective.quantized); validation (early
    # stopping) scores val_precision codes.
    c.train.quantize = "none"
    c.train.val_precision = "float32"
    c.train.keep_weight = 0.0  # weight of the earlier (larger) sizes in later stages; 0 = paper
    # Listwise distillation of the full-size ranking on unlabelled queries (no judgments):
    # each query's compressed ranking of its full-size top `distill_top` docs, the other
    # queries' and `distill_random` random docs is fitted to the full-size one (KL at
    # temperature `distill_temperature`), at every size of the stage.
    c.train.distill_weight = 0.0
    # Which unlabelled queries distillation and the score-preserving maps use: train (the
    # training queries, judgments unread; the corpus docs where there are none) | pseudo
    # (pseudo-queries from the corpus, data.pseudo_*) | train+pseudo.
    c.train.unlabelled_queries = "train"
    # Under train+pseudo, the share of the distillation queries that the training queries
    # (the query log) make up, by repeating them: 0.25 = one in four. 0 = as many as there
    # are (a few hundred log queries among tens of thousands of pseudo-queries).
    c.train.log_share = 0.0
    c.train.distill_temperature = 0.05
    # Inverse cloze: the share of each pseudo-query's teacher distribution moved onto the
    # document it was made from (0 = the full-size ranking alone). Needs pseudo-queries.
    c.train.distill_source_weight = 0.0
    # Adam's learning rate for free per-document codes (smec_jax.training.doc_codes: the methods
    # that fit the served corpus's codes directly, after the map).
    c.train.code_lr = 3e-4
    c.train.distill_batch = 64
    c.train.distill_top = 16
    c.train.distill_random = 256
    c.train.steps_per_stage = 300
    c.train.eval_every = 50  # validation nDCG@10 at d_t, for early stopping
    c.train.patience = 3
    c.train.log_every = 50
    c.train.ckpt_every = 100
    # Steps per dispatch: one jitted lax.scan over prefetched batches (log, checkpoint and
    # validation steps still fall between dispatches). Bit-identical results to one step
    # per call (1), with less launch overhead: default SciFact training 69 s instead of
    # 91 s on a 2-core CPU.
    c.train.steps_per_call = 10

    c.ads = ml_collections.ConfigDict()
    c.ads.enabled = True
    c.ads.tau_start = 1.0
    c.ads.tau_end = 0.1
    # zeros | variance: start each stage's logits from the kept dims' output variance on the
    # corpus (chosen on validation; with zeros the first selections are uniform at random).
    c.ads.init = "variance"
    c.ads.init_scale = 2.0

    c.memory = ml_collections.ConfigDict()  # S-XBM
    c.memory.enabled = True
    c.memory.size = 5000
    c.memory.k = 10
    c.memory.alpha = 0.1
    c.memory.sharded = False  # shard the memory's queue axis over the devices (huge memories)
    # How neighbours are found and compressed: auto | gather | memory search every memory
    # entry; list reads them from each id's precomputed list_size nearest ids (exact: the
    # memory holds frozen embeddings; a step where a list runs short searches instead).
    c.memory.neighbour_mode = "auto"
    c.memory.list_size = 64

    # The blocks that serve one method family, each declared in that family's file:
    # adaptor (Matryoshka-Adaptor's losses: smec_jax/methods/matryoshka_adaptor.py) and
    # csr (the sparse autoencoder: smec_jax/methods/csr.py).
    for name, block in checks.config_blocks().items():
        c[name] = block()

    # method=auto (smec_jax/methods/auto.py): with budget_bytes > 0, every candidate is
    # scored at each (size, precision) code of at most that many bytes per document, and
    # the choice names its best code; 0 = score the float vectors at every size.
    c.auto = ml_collections.ConfigDict()
    c.auto.budget_bytes = 0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.num_devices = 0  # 0 = all visible devices
    c.distributed = False  # call jax.distributed.initialize() (multi-host pods)

    c.eval = ml_collections.ConfigDict()
    c.eval.split = "test"
    c.eval.methods = ("truncate", "pca")
    # launch.train ends with a verdict at this size (the nearest compressed ladder size):
    # the trained method against eval.methods on all and on unseen test queries, with
    # paired intervals
    c.eval.verdict_size = 64
    c.eval.exclude_self = False  # drop hits whose doc id equals the query id (ArguAna-style)
    # Score ties: trec_eval (doc id descending, as trec_eval / pytrec_eval / BEIR / MTEB) | row
    c.eval.ties = "trec_eval"
    return c
