from dalal_data.app import NAME, build_app
from dalal_data.config import DataSettings
from dalal_shared.service import main_for

if __name__ == "__main__":
    main_for(NAME, DataSettings, build_app)
