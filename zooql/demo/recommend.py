"""RECOMMEND section of the demo, on the shipped synthetic leaderboard
(zooql/data/demo_evaluations.csv: 20 fictional models x 8 fictional datasets)."""

QUERIES = [
    "EXPLAIN RECOMMEND MODELS FOR DATASET 'my-xrays' DESCRIBED AS 'chest x-ray radiographs from a hospital' TOP 5",
    "RECOMMEND MODELS FOR DATASET 'my-xrays' GIVEN (demo-resnet-r50-in1k = 0.47, "
    "demo-resnet-r50-medical-mix = 0.83, demo-vit-b16-in1k = 0.55, demo-clip-b16-web-400m = 0.66) "
    "TOP 5 OPTIONS (include_observed = false)",
    "RECOMMEND MODELS FOR DATASET 'my-xrays' DESCRIBED AS 'chest x-ray radiographs from a hospital' TOP 5",
    "RECOMMEND MODELS FOR DATASET 'my-xrays' DESCRIBED AS 'chest x-ray radiographs from a hospital' "
    "USING knn_dataset TOP 5",
]
