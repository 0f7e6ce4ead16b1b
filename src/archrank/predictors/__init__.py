"""Performance predictors: fit on evaluated architectures, rank the rest.

Each predictor is registered by name (``make_predictor(name, space)``); modules are imported
lazily, so optional extras load only when their predictor is used.
"""

from archrank.predictors.base import register

register("gates", "archrank.predictors.gates:GatesPredictor")
register("mlp", "archrank.predictors.mlp:MLPPredictor")
register("gcn", "archrank.predictors.gcn:GCNPredictor")
register("lstm", "archrank.predictors.lstm:LSTMPredictor")
register("xgb", "archrank.predictors.trees:XGBPredictor")
register("xgb_path", "archrank.predictors.trees:XGBPathPredictor")
register("rf", "archrank.predictors.trees:RFPredictor")
register("rf_path", "archrank.predictors.trees:RFPathPredictor")
register("ssa", "archrank.predictors.ssa:SSAPredictor")
register("gates++", "archrank.predictors.gates_pp:GatesPPPredictor")
