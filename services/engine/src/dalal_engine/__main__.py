from dalal_engine.app import NAME, build_app
from dalal_engine.config import EngineSettings
from dalal_shared.service import main_for

if __name__ == "__main__":
    main_for(NAME, EngineSettings, build_app)
