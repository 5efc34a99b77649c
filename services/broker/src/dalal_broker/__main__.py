from dalal_broker.app import NAME, build_app
from dalal_broker.config import BrokerSettings
from dalal_shared.service import main_for

if __name__ == "__main__":
    main_for(NAME, BrokerSettings, build_app)
