"""Quick Draw Lab pipeline: data, rendering, models, resumable training, evaluation, export.

Used as `python -m pipeline COMMAND ...` (see `python -m pipeline --help`) and imported by the
dashboard. Modules, bottom layer first (imports only point down):

    errors, categories, strokes, models, runs      - no dependency on each other's layers above
    formats, download, raster                      - reading, fetching and drawing Quick, Draw! data
    datasets, predict                              - cached datasets for training; drawing -> guess
    train, evaluate, export                        - chunked training, metrics, TF.js export
    cli                                            - the command line
"""

__version__ = "0.1.0"
